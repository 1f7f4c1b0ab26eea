"""Guard against a broken release: the shipped nuclei model still segments real nuclei."""

from biounet.evaluate.run import evaluate
from biounet.model.file import default_model_path

MIN_F1_AT_05 = 0.90


def test_shipped_weights_segment_real_nuclei(shared_data, tmp_path):
    path = default_model_path()
    assert path.is_file(), f"the pretrained model is missing from the package: {path}"
    assert path.stat().st_size <= 20 * 1024**2
    folder = shared_data / "bbbc039" / "val"
    for sub in ("images", "labels"):
        (tmp_path / sub).mkdir()
        for image in sorted((folder / sub).glob("*.tif"))[10:12]:  # not used for selection
            (tmp_path / sub / image.name).symlink_to(image)
    # Normalised and post-processed as the model says, exactly as `biounet evaluate` does.
    table = evaluate(tmp_path / "labels", model=path, images_dir=tmp_path / "images")
    assert len(table.rows) == 2
    for row in table.rows:
        assert row["f1_0.50"] >= MIN_F1_AT_05, row
