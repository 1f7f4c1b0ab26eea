import pytest
import torch

from biounet.model.file import FORMAT_VERSION, load_model, save_model
from biounet.model.spec import ModelFileError, ModelSpec
from biounet.model.unet import UNet


def test_roundtrip(tmp_path):
    net = UNet(width=2, out_channels=3)
    spec = ModelSpec(unet=net.config, target="3class", classes=["bg", "in", "edge"], tile=572)
    save_model(tmp_path / "m.pt", net, spec)
    net2, spec2 = load_model(tmp_path / "m.pt")
    assert spec2 == spec
    x = torch.randn(1, 1, 188, 188)
    assert torch.equal(net.eval()(x), net2(x))


def test_corrupt_and_foreign_files(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="not a readable"):
        load_model(bad)
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ModelFileError, match="not a biounet model"):
        load_model(tmp_path / "other.pt")
    with pytest.raises(ModelFileError, match="not found"):
        load_model(tmp_path / "missing.pt")


def test_newer_format_refused(tmp_path):
    net = UNet(width=2)
    save_model(tmp_path / "m.pt", net, ModelSpec(unet=net.config))
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    payload["format_version"] = FORMAT_VERSION + 1
    torch.save(payload, tmp_path / "new.pt")
    with pytest.raises(ModelFileError, match="upgrade biounet"):
        load_model(tmp_path / "new.pt")


def test_incompatible_weights(tmp_path):
    net = UNet(width=2)
    save_model(tmp_path / "m.pt", net, ModelSpec(unet=net.config))
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    payload["spec"]["unet"]["width"] = 4
    torch.save(payload, tmp_path / "wrong.pt")
    with pytest.raises(ModelFileError, match="does not match"):
        load_model(tmp_path / "wrong.pt")


def test_training_data_roundtrip_and_strictness(tmp_path):
    """A model file's training data comes back as written; a file whose training data has an unknown
    key, or a citation without its DOI, is refused like any spec it does not match."""
    from biounet.model.training_data import ISBI2012

    net = UNet(width=2)
    save_model(tmp_path / "m.pt", net, ModelSpec(unet=net.config, training_data=ISBI2012, pixel_size=0.004,
                                                 diameter=28.0))
    _, spec = load_model(tmp_path / "m.pt")
    assert spec.training_data == ISBI2012 and spec.training_data.cite[0].doi == "10.1371/journal.pbio.1000502"
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    for broken, message in (({"url": "x"}, "unknown training_data keys: \\['url'\\]"),
                            ({"cite": [{"text": "a paper"}]}, "needs exactly text and doi")):
        payload["spec"]["training_data"] = {**ISBI2012.to_dict(), **broken}
        torch.save(payload, tmp_path / "bad.pt")
        with pytest.raises(ModelFileError, match=message):
            load_model(tmp_path / "bad.pt")
