"""The Snakemake workflow (workflows/Snakefile) runs locally on two small slides."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml
import zarr

from benchmarks.common import threshold_model

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / "workflows"
BIOUNET = Path(sys.executable).with_name("biounet")

pytest.importorskip("snakemake", reason="snakemake is in the test extra: pip install -e '.[test]'")


@pytest.fixture(scope="module")
def slides(tmp_path_factory, shared_data):
    """A tiled OME-TIFF (512 x 512 px mosaic) and a plain zarr array (600 x 696 px) of real nuclei."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from make_slide import write_slide

    folder = tmp_path_factory.mktemp("slides")
    write_slide(folder / "mosaic.ome.tif", 512)
    images = sorted((shared_data / "bbbc039" / "train" / "images").glob("*.tif"))[:2]
    image = np.concatenate([tifffile.imread(p) for p in images], axis=0)[:600]
    z = zarr.create_array(str(folder / "field.zarr"), shape=image.shape, chunks=(256, 256), dtype=image.dtype,
                          zarr_format=2)
    z[...] = image
    (folder / "notes.txt").write_text("not a slide")
    return folder


def snakemake(config: Path, cwd: Path, *extra, timeout=300):
    args = [sys.executable, "-m", "snakemake", "-c", "2", "-s", str(WORKFLOWS / "Snakefile"),
            "--configfile", str(config), *extra]
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def read_summary(path: Path) -> dict:
    with open(path, newline="") as f:
        return {row["slide"]: row for row in csv.DictReader(f, delimiter="\t")}


def test_config_example_is_complete():
    """The shipped config names every key the Snakefile reads."""
    config = yaml.safe_load((WORKFLOWS / "config.yaml").read_text())
    text = (WORKFLOWS / "Snakefile").read_text()
    for key in ("input_dir", "output_dir", "model", "segment_args", "device", "threads", "overwrite", "biounet",
                "parts"):
        assert key in config
        assert f'"{key}"' in text


def test_workflow_segments_every_slide_and_summarises(slides, tmp_path):
    # The raw-intensity threshold model segments the nuclei (Otsu's threshold of
    # these BBBC039 fields is about 420), so the table has real object counts.
    model = threshold_model(tmp_path / "threshold.pt", threshold=400.0)
    out = tmp_path / "results"
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "input_dir": str(slides), "output_dir": str(out), "model": str(model),
        "segment_args": "--block 128 --tile 380", "device": "cpu", "threads": 1, "biounet": str(BIOUNET),
    }))
    run = snakemake(config, tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]

    summary = read_summary(out / "summary.tsv")
    assert sorted(summary) == ["field", "mosaic"]
    expected = {"mosaic": ("512x512", 16), "field": ("600x696", 30)}
    for name, (shape, blocks) in expected.items():
        row = summary[name]
        assert row["shape"] == shape and int(row["blocks"]) == blocks and row["axes"] == "yx"
        assert row["status"] == "complete"
        assert float(row["seconds"]) > 0
        root = zarr.open_group(str(out / f"{name}.ome.zarr"), mode="r")
        assert int(row["foreground_pixels"]) == np.count_nonzero(root["labels/classes/0"][...]) > 0
        if "instances" in root["labels"]:  # objects: the instance layer's distinct ids
            ids = np.unique(root["labels/instances/0"][...])
            assert row["count_from"] == "instances" and int(row["objects"]) == np.count_nonzero(ids) > 10
        else:
            assert row["count_from"] == "classes" and row["objects"] == ""
        assert f"{blocks} blocks of {shape} (yx), {blocks} computed" in (out / "logs" / f"{name}.segment.log").read_text()

    # A rerun of a finished slide (forced here; also after a change to the Snakefile)
    # only checks its output: nothing is recomputed.
    run = snakemake(config, tmp_path, "--forcerun", str(out / "done" / "mosaic"))
    assert run.returncode == 0, run.stderr[-3000:]
    assert "computed 0 blocks" in (out / "logs" / "mosaic.segment.log").read_text()
    history = [json.loads(line) for line in (out / "history" / "mosaic.jsonl").read_text().splitlines()]
    assert [h["kind"] for h in history] == ["segment", "check"]
    assert read_summary(out / "summary.tsv")["mosaic"]["seconds"] == summary["mosaic"]["seconds"]


def test_instances_are_counted_when_present(tmp_path):
    """With an instance layer, `objects` counts its distinct nonzero ids."""
    sys.path.insert(0, str(WORKFLOWS / "scripts"))
    out = tmp_path / "s.ome.zarr"
    root = zarr.open_group(str(out), mode="w", zarr_format=2)
    classes = np.zeros((64, 64), np.uint8)
    classes[2:10, 2:10] = 1
    classes[20:30, 20:40] = 1
    inst = np.zeros((64, 64), np.uint32)
    inst[2:10, 2:10] = 1
    inst[20:30, 20:30] = 7
    inst[20:30, 30:40] = 9
    root.create_array("labels/classes/0", data=classes, chunks=(32, 32))
    root.create_array("labels/instances/0", data=inst, chunks=(32, 32))
    history = tmp_path / "h.jsonl"
    history.write_text('{"kind": "segment", "seconds": 2.5}\n{"kind": "segment", "seconds": 1.0}\n'
                       '{"kind": "check", "seconds": 9.0}\n')
    stats = tmp_path / "stats.json"
    run = subprocess.run([sys.executable, str(WORKFLOWS / "scripts" / "slide_stats.py"), str(out), str(history),
                          str(stats)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    result = json.loads(stats.read_text())
    assert result["objects"] == 3 and result["count_from"] == "instances"
    assert result["foreground_pixels"] == 64 + 200
    assert result["seconds"] == 3.5


def test_workflow_spreads_a_slide_over_parts(slides, tmp_path):
    """`parts: 2`: two prediction jobs and two finishing jobs per slide; the result
    equals one `biounet segment` of the slide."""
    from biounet.pipeline.segment import segment
    from tests.conftest import assert_same_output

    model = threshold_model(tmp_path / "threshold.pt", threshold=400.0)
    one = tmp_path / "one"
    one.mkdir()
    (one / "mosaic.ome.tif").symlink_to(slides / "mosaic.ome.tif")
    out = tmp_path / "results"
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "input_dir": str(one), "output_dir": str(out), "model": str(model), "parts": 2,
        "segment_args": "--block 128 --tile 380", "device": "cpu", "threads": 1, "biounet": str(BIOUNET),
    }))
    run = snakemake(config, tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    logs = sorted(p.name for p in (out / "logs").iterdir())
    assert logs == ["mosaic.finalize.part1.log", "mosaic.finalize.part2.log", "mosaic.segment.part1.log",
                    "mosaic.segment.part2.log"]
    assert "part 1/2: computed 8 blocks" in (out / "logs" / "mosaic.segment.part1.log").read_text()
    assert read_summary(out / "summary.tsv")["mosaic"]["status"] == "complete"
    reference = tmp_path / "reference.ome.zarr"
    segment(slides / "mosaic.ome.tif", reference, model=model, block=128, tile=380, device="cpu", progress=False)
    assert_same_output(out / "mosaic.ome.zarr", reference)
