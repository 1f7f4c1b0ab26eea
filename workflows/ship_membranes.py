"""Ship the `membranes` run's selected model (`workflows/models.sh ship membranes`).

    python workflows/ship_membranes.py RUN_MODEL VAL_FOLDER OUT

RUN_MODEL is the run's best checkpoint by Rand error on slices 16-19 (what
`biounet train --metric rand_error` keeps); VAL_FOLDER holds those slices
(images/, labels/). The copy written to OUT segments at the interior
threshold whose Rand error on those same slices is lowest (the challenge's
thresholds 0.0-1.0 by 0.1), so `biounet segment --model membranes` makes
the segments the reported Rand error describes. Slices 16-19 select; the
figures on them are therefore selection figures (MODEL_CARD.md).
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(model: str, val: str, out: str) -> None:
    from biounet.evaluate.run import evaluate
    from biounet.evaluate.tune import save_tuned
    from biounet.model.file import load_model

    table = evaluate(Path(val) / "labels", model=model, images_dir=Path(val) / "images", device="cpu")
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


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__.split("\n\n")[1].strip())
    main(*sys.argv[1:])
