"""Ship a run's selected model into biounet/weights/ (`workflows/models.sh ship ...`).

    python workflows/ship.py membranes RUN_MODEL VAL_FOLDER OUT
    python workflows/ship.py nuclei SELECTED_MODEL GUARD_FOLDER OUT
    python workflows/ship.py facts NAME MODEL OUT
    python workflows/ship.py he-nuclei SELECTED_MODEL SELECTION_FOLDER OUT
    python workflows/ship.py nuclei-general SELECTED_MODEL GUARD_FOLDER OUT

Every shipped file carries its model's facts (`FACTS`, one entry per shipped
model): the training data and its terms, the pixel size the data documents, and
the median object diameter of the training labels, measured as `biounet train`
measures it (labels from $DATA, default ../shared/data). `facts` writes MODEL
with NAME's facts and nothing else changed (how the shipped files got them).

membranes: RUN_MODEL is the run's best checkpoint by Rand error on slices
16-19 (what `biounet train --metric rand_error` keeps); VAL_FOLDER holds those
slices (images/, labels/). The copy written to OUT segments at the interior
threshold whose Rand error on those same slices is lowest (the challenge's
thresholds 0.0-1.0 by 0.1), so `biounet segment --model membranes` makes the
segments the reported Rand error describes. Slices 16-19 select; the figures
on them are therefore selection figures (MODEL_CARD.md).

he-nuclei: SELECTED_MODEL is what `models.sh select he-RUN` wrote (checkpoint and post-processing
chosen by AJI, two-fold cross-fitted on MONU-SEL8, 8 of MoNuSeg's 30 training tiles: MoNuSeg's own
test tiles are kept back, so its reported figures are the cross-fitted ones that `tune` recorded). The
copy written to OUT carries the MoNuSeg terms (CC BY-NC-SA 4.0), 0.25 um/px and portable names of
the image sets.

nuclei: SELECTED_MODEL is what `models.sh select RUN` wrote (checkpoint and
post-processing chosen on VAL40); GUARD_FOLDER holds the images that chose
nothing (GUARD10). The copy written to OUT carries its scores there as
`held_out` in its provenance (`biounet info --model nuclei` shows them), and
portable names of the image sets instead of this machine's paths.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from biounet.model.training_data import BBBC039, BBBC039_DSB2018, ISBI2012, MONUSEG, TrainingData

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Facts:
    """A shipped model's facts: its training data (and terms), the pixel size (um/px) the data
    documents (None: it documents none), and its training labels (a folder under $DATA; only
    the first `first` files sorted by name, or all)."""

    data: TrainingData
    pixel_size: float | None
    labels: str | None  # None: the diameter `biounet train` recorded stands
    first: int | None = None
    exclude: tuple[str, ...] = ()  # label files (stems) that did not train it


FACTS = {
    # BBBC039's documentation gives no pixel size (nor does BBBC022's, the screen it comes from).
    "nuclei": Facts(BBBC039, None, "bbbc039/train/labels"),
    # ISBI 2012: 4 x 4 x 50 nm voxels (Cardona et al. 2010); trained on slices 0-15, whose "objects"
    # are the cell interiors (the 0/1 mask's components).
    "membranes": Facts(ISBI2012, 0.004, "isbi2012/train/labels", first=16),
    # MoNuSeg: 40x TCGA tiles, 0.2456-0.2527 um/px; trained on the tiles outside the selection folder
    # (MONU-SEL8 in models.sh), which `he_nuclei` leaves out.
    "he-nuclei": Facts(MONUSEG, 0.25, "monuseg/train/labels"),
    # The generalist: BBBC039 train and DSB2018's dark-background fluorescence (GENERAL-TRAIN in models.sh,
    # a selection of dsb2018/train by its manifest), whose median diameter `biounet train` measured;
    # DSB2018 documents no pixel size.
    "nuclei-general": Facts(BBBC039_DSB2018, None, None),
}


def data_dir() -> Path:
    return Path(os.environ.get("DATA") or ROOT.parent / "shared" / "data")


def training_diameter(facts: Facts, ignore: int | None = None) -> float:
    """The median object diameter (px) of the training labels, as `biounet train` measures it."""
    from biounet.read.files import read_labels
    from biounet.train.data import median_diameter, object_areas

    files = [f for f in sorted((data_dir() / facts.labels).glob("*.tif")) if f.stem not in facts.exclude][: facts.first]
    if not files:
        sys.exit(f"ship.py: no training labels in {data_dir() / facts.labels}; set DATA to the shared data folder")
    return median_diameter([object_areas(read_labels(f), ignore) for f in files])


def with_facts(spec, facts: Facts):
    """`spec` with the training data, pixel size and training labels' median object diameter of `facts`."""
    diameter = spec.diameter if facts.labels is None else training_diameter(facts, spec.provenance.get("ignore"))
    return replace(spec, training_data=facts.data, pixel_size=facts.pixel_size, diameter=diameter)


def scores(model: str, folder: str):
    """`biounet evaluate` of `model` on FOLDER/images against FOLDER/labels, on the CPU."""
    from biounet.evaluate.run import evaluate

    return evaluate(Path(folder) / "labels", model=model, images_dir=Path(folder) / "images", device="cpu")


def membranes(model: str, val: str, out: str) -> None:
    from biounet.evaluate.tune import save_tuned
    from biounet.model.file import load_model

    table = scores(model, val)
    summary = table.summary
    threshold = round(float(summary["rand_threshold"]), 2)
    net, spec = load_model(model)
    chosen = {"images": str(Path(val) / "images"), "count": len(table.rows), "metric": "rand_error",
              "rand_error": summary["rand_error"], "pixel_error": summary["pixel_error"],
              "v_rand": summary["v_rand"], "v_info": summary["v_info"]}
    save_tuned(out, net, with_facts(spec, FACTS["membranes"]), "components", {"threshold": threshold}, chosen)
    print(f"wrote {out}: threshold {threshold} (Rand error {summary['rand_error']:.4f}, pixel error "
          f"{summary['pixel_error']:.4f}, V_Rand {summary['v_rand']:.4f}, V_Info {summary['v_info']:.4f} on "
          f"{len(table.rows)} slices); {Path(out).stat().st_size / 2**20:.1f} MB")


CHOSEN_ON = {
    "nuclei": "bbbc039/val: the first 40 images sorted by name (VAL40), checkpoint cross-fitted",
    "nuclei-general": "bbbc039/val VAL40 and dsb2018/val's dark-background fluorescence (81 images), "
                      "checkpoint cross-fitted",
}


def nuclei(model: str, guard: str, out: str, name: str = "nuclei") -> None:
    """A nuclei run's selected model with `name`'s facts and its scores on GUARD10."""
    from biounet.evaluate.tune import headline
    from biounet.model.file import load_model, save_model

    table = scores(model, guard)
    net, spec = load_model(model)
    provenance = dict(spec.provenance)
    tuned = dict(provenance.get("postprocess_tuned_on") or {})
    tuned["images"] = CHOSEN_ON[name]
    provenance["postprocess_tuned_on"] = tuned
    held_out = headline(table.summary)
    provenance["held_out"] = {"images": "bbbc039/val: the last 10 images sorted by name (GUARD10)",
                              "count": len(table.rows), **held_out}
    if name == "nuclei-general":
        provenance["images"] = provenance["labels"] = "bbbc039/train + dsb2018/train dark-background fluorescence"
        provenance["val_images"] = provenance["val_labels"] = "bbbc039/val VAL10 + 10 of dsb2018/val fluorescence"
    save_model(out, net, replace(with_facts(spec, FACTS[name]), provenance=provenance))
    figures = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in held_out.items())
    print(f"wrote {out}: on the {len(table.rows)} held-out images {figures}; "
          f"{Path(out).stat().st_size / 2**20:.1f} MB")


def he_nuclei(model: str, selection: str, out: str) -> None:
    from biounet.model.file import load_model, save_model

    net, spec = load_model(model)
    provenance = dict(spec.provenance)
    tuned = dict(provenance.get("postprocess_tuned_on") or {})
    tuned["images"] = ("monuseg/train: MONU-SEL8 (8 tiles, 2 of each large organ group), checkpoint and "
                       "post-processing cross-fitted by AJI")
    provenance["postprocess_tuned_on"] = tuned
    provenance["images"], provenance["labels"] = "monuseg/train: MONU-TRAIN22", "monuseg/train: MONU-TRAIN22"
    provenance["val_images"] = provenance["val_labels"] = "monuseg/train: MONU-SEL8"
    chose = tuple(sorted(f.stem for f in (Path(selection) / "labels").iterdir()))
    facts = replace(FACTS["he-nuclei"], exclude=chose)
    save_model(out, net, replace(with_facts(spec, facts), provenance=provenance))
    print(f"wrote {out}: {Path(out).stat().st_size / 2**20:.1f} MB, selected on {Path(selection).name} "
          f"({len(chose)} tiles left out of the diameter, as of training)")


def add_facts(name: str, model: str, out: str) -> None:
    from biounet.model.file import load_model, save_model

    if name not in FACTS:
        sys.exit(f"ship.py: no facts for {name!r}; known: {', '.join(FACTS)}")
    net, spec = load_model(model)
    spec = with_facts(spec, FACTS[name])
    save_model(out, net, spec)
    print(f"wrote {out}: training data {spec.training_data.name}, pixel size {spec.pixel_size} um/px, "
          f"diameter {spec.diameter} px")


if __name__ == "__main__":
    steps = {"membranes": membranes, "nuclei": nuclei, "facts": add_facts, "he-nuclei": he_nuclei,
             "nuclei-general": lambda *a: nuclei(*a, name="nuclei-general")}
    if len(sys.argv) != 5 or sys.argv[1] not in steps:
        sys.exit(__doc__.split("\n\n")[1].strip())
    steps[sys.argv[1]](*sys.argv[2:])
