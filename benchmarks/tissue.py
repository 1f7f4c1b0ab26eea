"""10. A whole slide with tissue detection: only the blocks with tissue are predicted.

An H&E slide of `tissue_slide` x `tissue_slide` px (20480 at full size), about half of it
glass: real MoNuSeg tissue in irregular pieces on glass with noise and dust
(`benchmarks.he_slide`), written once as an Aperio SVS (tiled JPEG, 4x and 16x levels,
ImageDescription with MPP = 0.25 and AppMag = 40) and cached in the work folder.
`biounet segment` runs on it as fresh processes with the default `--tissue auto` and with
`--tissue none`, and on the same slide scanned at 20x (each pixel the mean of 2 x 2, an SVS
at MPP = 0.5, AppMag = 20) with `--tissue auto`, alternated in each repeat; the wall time of
each process (start-up included) and the ratios per repeat. The model: `--model` if given,
else the default for RGB brightfield (`he-nuclei`, trained at 0.25 um/px: the 20x slide is
enlarged 2x for it), or, in a build without it, the shipped nuclei model on one channel
(`--channel 0`, red).

    python -m benchmarks --only tissue --repeats 3
    python -m benchmarks --only tissue --model he-nuclei.pt
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from benchmarks.common import MP, ROOT, Context, Section, Stats, Target, biounet_cmd, ratio_stats, run_child
from benchmarks.common import segment_seconds as reported_seconds
from benchmarks.he_slide import Downsampled, HESlide, write_svs

GOAL = 0.6  # wall time with tissue detection / with --tissue none, at most
MPP, MAGNIFICATION = 0.25, 40


def he_slide(ctx: Context, size: int, down: int = 1) -> Path:
    """The benchmark's SVS of `size` x `size` px at 40x (`down` 2: the same slide at 20x), made once."""
    path = ctx.workdir / (f"he-{size}.svs" if down == 1 else f"he-{size}-{MAGNIFICATION // down}x.svs")
    if not path.exists():
        tmp = path.with_suffix(".part.svs")
        slide = HESlide(size, size, tissue=0.5, seed=26)
        write_svs(tmp, slide if down == 1 else Downsampled(slide, down), mpp=MPP * down, mag=MAGNIFICATION // down)
        tmp.rename(path)
    return path


def model_args(model: str | None) -> tuple[str, list[str]]:
    """The model's name and its options: `model`, else the default for RGB slides when this
    build has it, else the shipped nuclei model on one channel (red)."""
    from biounet.model.file import load_model
    from biounet.model.names import resolve_model, shipped

    if model is None and "he-nuclei" in shipped():
        return "he-nuclei (the default for RGB brightfield)", []
    name = model or "nuclei"
    _, spec = load_model(resolve_model(name))
    return name, ["--model", name] + (["--channel", "0"] if spec.unet.in_channels == 1 else [])


def outline_png(output: Path, path: Path, max_side: int = 1280) -> None:
    """The output's image at the first pyramid level within `max_side`, with the mask's outlines
    (the tissue in green, the predicted area: tissue and its context, in orange) and the blocks
    that were not predicted shaded blue, on a grid of the blocks."""
    import zarr
    from PIL import Image as PILImage
    from scipy import ndimage as ndi

    from biounet.plan.tissue import from_ranges

    root = zarr.open_group(str(output), mode="r")
    level = next(i for i in range(64) if str(i) in root and max(root[str(i)].shape[-2:]) <= max_side)
    image = np.moveaxis(root[str(level)][...], 0, -1).astype(np.float64)
    run = json.loads((output / ".biounet" / ".zattrs").read_text())["run"]
    block = run["params"]["block"] / 2**level  # pixels of this level
    rows, cols = (np.arange(n) // block for n in image.shape[:2])
    per_row = int(cols.max()) + 1
    skipped = np.isin(rows[:, None] * per_row + cols[None, :], sorted(from_ranges(run["tissue"]["skipped"])))
    image[skipped] = 0.75 * image[skipped] + 0.25 * np.array([70, 110, 230])
    grid = (np.diff(rows, prepend=-1) > 0)[:, None] | (np.diff(cols, prepend=-1) > 0)[None, :]
    image[grid] = 0.5 * image[grid] + 0.5 * 160
    layer = root["labels/tissue/0"][...]
    scale = run["tissue"]["factor"] / 2**level  # this level's pixels per mask pixel
    up = layer[np.ix_(*(np.minimum((np.arange(n) / scale).astype(int), m - 1)
                        for n, m in zip(image.shape[:2], layer.shape)))]
    for inside, colour in ((up > 0, (255, 150, 0)), (up == 1, (0, 170, 70))):  # predicted, then tissue
        edge = inside & ~ndi.binary_erosion(inside, border_value=1)
        image[ndi.binary_dilation(edge)] = colour
    PILImage.fromarray(np.clip(np.rint(image), 0, 255).astype(np.uint8)).save(path)


def info_line(slide: Path) -> str:
    """What `biounet info` reads of the slide: pixel size and objective."""
    got = json.loads(run_child(biounet_cmd("info", str(slide), "--json")).stdout)
    size = got["pixel_size"]["x"]
    assert abs(size[0] - MPP) < 1e-9 and size[1] == "micrometer", size
    assert got["objective_power"] == MAGNIFICATION, got["objective_power"]
    return (f"`biounet info` reads it as {got['format']}: {size[0]} {size[1]}/px, {got['objective_power']:.0f}x "
            f"({got['metadata_source']}), levels {got['levels']}")


def measure(ctx: Context) -> Section:
    size = ctx.sizes["tissue_slide"]
    slides = {"auto": he_slide(ctx, size), "none": he_slide(ctx, size), "20x": he_slide(ctx, size, 2)}
    name, args = model_args(ctx.model)
    modes = {"auto": ["--tissue", "auto"], "none": ["--tissue", "none"], "20x": ["--tissue", "auto"]}
    seconds: dict[str, list[float]] = {mode: [] for mode in modes}
    reported: dict[str, list[float]] = {mode: [] for mode in modes}
    entries: dict[str, dict] = {}
    objects: dict[str, int] = {}
    for _ in range(ctx.repeats):
        for mode, options in modes.items():
            out = ctx.output(f"tissue-{mode}.ome.zarr")
            run = run_child(biounet_cmd("segment", str(slides[mode]), "-o", str(out), "--no-progress", *options, *args))
            seconds[mode].append(run.seconds)
            reported[mode].append(reported_seconds(run.stdout))
            record = json.loads((out / ".biounet" / ".zattrs").read_text())["run"]
            objects[mode] = record.get("objects", 0)
            if mode != "none":
                entries[mode] = record["tissue"]
                assert re.search(r"tissue: \d+ of \d+ blocks \(\d+% skipped\)", run.stdout), run.stdout
            if mode == "auto":
                picture = ROOT / "docs" / "tissue-mask.png" if not ctx.smoke else ctx.workdir / "tissue-mask.png"
                outline_png(out, picture)
    entry = entries["auto"]
    ratio = ratio_stats(seconds["auto"], seconds["none"])
    ratio_20x = ratio_stats(seconds["20x"], seconds["auto"])
    tissue_mp = entry["fraction"] * size * size / MP
    skipped = entry["of"] - entry["blocks"]
    section = Section("Whole slide with tissue detection", "python -m benchmarks --only tissue")
    section.lines += [
        f"An H&E slide of {size} x {size} px ({size * size / MP:.0f} MP) made of real MoNuSeg tissue in irregular "
        "pieces on glass with noise and dust (`benchmarks/he_slide.py`), written as an Aperio SVS: tiled JPEG, "
        f"4x and 16x levels, MPP = {MPP}, AppMag = {MAGNIFICATION}. {info_line(slides['auto'])}. The same slide at "
        f"20x: {size // 2} x {size // 2} px, each pixel the mean of 2 x 2, MPP = {2 * MPP}, AppMag = 20.", "",
        f"Model: {name}. `biounet segment` as fresh processes, `--tissue auto` (the default for RGB scans) and "
        "`--tissue none` on the 40x slide and `--tissue auto` on the 20x one, alternated in each repeat; process "
        "wall time, start-up included (segment's own run time beside it).", "",
        f"Tissue: {100 * entry['fraction']:.1f} % of the slide ({tissue_mp:.0f} MP); mask {entry['factor']} px per "
        f"pixel; blocks predicted {entry['blocks']} of {entry['of']} ({skipped} skipped, "
        f"{100 * skipped / entry['of']:.0f} %); at 20x {entries['20x']['blocks']} of {entries['20x']['of']}. "
        "The mask: `docs/tissue-mask.png` (tissue outlined green, the predicted area orange, blocks not predicted "
        "shaded blue).", ""]
    names = {"auto": "40x, --tissue auto", "none": "40x, --tissue none", "20x": "20x, --tissue auto"}
    section.table(["run", "wall s", "segment s", "slide MP/s (40x MP)", "tissue MP/s", "objects"], [
        [names[mode], Stats(seconds[mode]).show("{:.1f}"), Stats(reported[mode]).show("{:.1f}"),
         Stats([size * size / MP / s for s in seconds[mode]]).show(),
         Stats([tissue_mp / s for s in seconds[mode]]).show(), f"{objects[mode]:,}"] for mode in modes])
    section.lines += [f"Wall time 40x auto / none, per repeat: {ratio.show()}; 20x / 40x (both auto): "
                      f"{ratio_20x.show()}.", ""]
    section.targets.append(Target("whole-slide wall time, tissue detection / --tissue none", f"{ratio.median:.2f}",
                                  f"<= {GOAL}", ratio.median <= GOAL))
    return section
