"""The tissue mask as an NGFF labels image: its pyramid and the transforms that lay it over the image."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

from biounet.write.tissue import write_tissue


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_pyramid_and_transforms(tmp_path, version):
    layer = np.random.default_rng(1).integers(0, 3, (600, 520)).astype(np.uint8)
    zarr.open_group(str(tmp_path), mode="a", zarr_format=2 if version == "0.4" else 3)
    pixel = {"y": (0.25, "micrometer"), "x": (0.5, "micrometer")}
    write_tissue(tmp_path, layer, 16, pixel, version)
    group = zarr.open_group(str(tmp_path), path="labels/tissue", mode="r")
    levels = [group[str(i)][...] for i in range(3)]
    assert "3" not in group  # 600 -> 300 -> 150 px: the last level within 256 px
    for i, level in enumerate(levels):
        assert np.array_equal(level, layer[:: 2**i, :: 2**i])
    attrs = group.attrs.asdict()
    ms = (attrs["ome"] if version == "0.5" else attrs)["multiscales"][0]
    scale, shift = ms["datasets"][2]["coordinateTransformations"]
    # level 2: 64 slide pixels per pixel; each pixel centred on its 16 x 16 slide pixels' centre
    assert scale["scale"] == [0.25 * 64, 0.5 * 64] and shift["translation"] == [0.25 * 7.5, 0.5 * 7.5]
    assert [a["unit"] for a in ms["axes"]] == ["micrometer", "micrometer"]
    label = (attrs["ome"] if version == "0.5" else attrs)["image-label"]
    assert [c["label-value"] for c in label["colors"]] == [0, 1, 2] and label["colors"][0]["rgba"][3] == 0
    if version == "0.4":
        assert json.loads((tmp_path / "labels" / "tissue" / "0" / ".zarray").read_text())["dimension_separator"] == "/"
