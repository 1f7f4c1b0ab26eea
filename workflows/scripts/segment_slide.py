"""The Snakefile's `segment` and `finalize` rules: run `biounet segment` on one slide
(or, with `parts` > 1, one part of it: `--part I/N`, or `--finalize --part I/N`).

- An output that is already complete (Snakemake reruns the job after a
  change to the Snakefile, or with --forcerun) is only checked: `--part 1/1`
  verifies it was made with the same parameters and computes nothing.
- Anything else runs, or resumes a run that was killed: biounet keeps the
  finished blocks.
- Each successful run appends {"kind", "seconds", "finished"} to the slide's
  history file (not a Snakemake output, so it survives reruns); the summary's
  wall time is the sum over runs that segmented. `overwrite` clears it.
"""

import datetime
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

sm = globals()["snakemake"]
zarr_path = Path(sm.params.zarr)
history = Path(sm.params.history)
log = Path(sm.log[0])
overwrite = bool(sm.params.overwrite)

from biounet.write.runfolder import read_run_record  # noqa: E402 - after the snakemake object

record = read_run_record(zarr_path) if zarr_path.is_dir() else None
complete = not overwrite and record is not None and record.get("status") == "complete"
slide = sm.input.slide if "slide" in sm.input.keys() else sm.params.slide
options = list(sm.params.options)
check = ["--part", "1/1"] if complete and "--part" not in options else []
command = [*shlex.split(sm.params.biounet), "segment", str(slide), "-o", str(zarr_path), *options, *check, "--no-progress"]
env = dict(os.environ, OMP_NUM_THREADS=str(sm.threads))

history.parent.mkdir(parents=True, exist_ok=True)
if overwrite:
    history.unlink(missing_ok=True)
log.parent.mkdir(parents=True, exist_ok=True)
start = time.perf_counter()
with open(log, "w") as out:
    out.write("+ " + shlex.join(command) + "\n")
    out.flush()
    code = subprocess.call(command, stdout=out, stderr=subprocess.STDOUT, env=env)
seconds = time.perf_counter() - start
if code != 0:
    sys.exit(f"biounet segment failed (exit {code}) on {slide}: see {log}")
with open(history, "a") as f:
    f.write(json.dumps({"kind": "check" if complete else "segment", "seconds": round(seconds, 2),
                        "finished": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}) + "\n")
Path(sm.output[0]).touch()
