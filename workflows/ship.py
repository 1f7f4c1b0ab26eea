"""Ship a run's selected model into biounet/weights/ (`workflows/models.sh ship ...`).

    python workflows/ship.py membranes RUN_MODEL VAL_FOLDER OUT
    python workflows/ship.py nuclei SELECTED_MODEL GUARD_FOLDER OUT

membranes: RUN_MODEL is the run's best checkpoint by Rand error on slices
16-19 (what `biounet train --metric rand_error` keeps); VAL_FOLDER holds those
slices (images/, labels/). The copy written to OUT segments at the interior
threshold whose Rand error on those same slices is lowest (the challenge's
thresholds 0.0-1.0 by 0.1), so `biounet segment --model membranes` makes the
segments the reported Rand error describes. Slices 16-19 select; the figures
on them are therefore selection figures (MODEL_CARD.md).

nuclei: SELECTED_MODEL is what `models.sh select RUN` wrote (checkpoint and
post-processing chosen on VAL40); GUARD_FOLDER holds the images that chose
nothing (GUARD10). The copy written to OUT carries its scores there as
`held_out` in its provenance (`biounet info --model nuclei` shows them), and
portable names of the image sets instead of this machine's paths.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path


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
    save_tuned(out, net, spec, "components", {"threshold": threshold}, chosen)
    print(f"wrote {out}: threshold {threshold} (Rand error {summary['rand_error']:.4f}, pixel error "
          f"{summary['pixel_error']:.4f}, V_Rand {summary['v_rand']:.4f}, V_Info {summary['v_info']:.4f} on "
          f"{len(table.rows)} slices); {Path(out).stat().st_size / 2**20:.1f} MB")


def nuclei(model: str, guard: str, out: str) -> None:
    from biounet.evaluate.tune import headline
    from biounet.model.file import load_model, save_model

    table = scores(model, guard)
    net, spec = load_model(model)
    provenance = dict(spec.provenance)
    tuned = dict(provenance.get("postprocess_tuned_on") or {})
    tuned["images"] = "bbbc039/val: the first 40 images sorted by name (VAL40), checkpoint cross-fitted"
    provenance["postprocess_tuned_on"] = tuned
    held_out = headline(table.summary)
    provenance["held_out"] = {"images": "bbbc039/val: the last 10 images sorted by name (GUARD10)",
                              "count": len(table.rows), **held_out}
    save_model(out, net, replace(spec, provenance=provenance))
    figures = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in held_out.items())
    print(f"wrote {out}: on the {len(table.rows)} held-out images {figures}; "
          f"{Path(out).stat().st_size / 2**20:.1f} MB")


if __name__ == "__main__":
    steps = {"membranes": membranes, "nuclei": nuclei}
    if len(sys.argv) != 5 or sys.argv[1] not in steps:
        sys.exit(__doc__.split("\n\n")[1].strip())
    steps[sys.argv[1]](*sys.argv[2:])
