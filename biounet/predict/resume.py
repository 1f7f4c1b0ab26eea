"""The run record and per-block markers that make a killed run resumable.

zarr does not write empty chunks, so a missing chunk cannot mean "not done":
every finished block leaves an empty marker file `.biounet/done/<index>`,
created only after its data is written. The run record `.biounet/run.json`
(written atomically, last during set-up) holds the parameters that determine
the result, so a rerun can tell a resume of the same work from a different
request.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

STATE_DIR = ".biounet"
RECORD = "run.json"
DONE = "done"


class ResumeError(ValueError):
    """An existing output that this run cannot continue."""


def record_path(output: Path) -> Path:
    return Path(output) / STATE_DIR / RECORD


def read_record(output: Path) -> dict | None:
    path = record_path(output)
    if not path.exists():
        return None
    return json.loads(path.read_text())


def write_record(output: Path, record: dict) -> None:
    """Write the run record atomically (temp file + rename)."""
    path = record_path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.parent / DONE).mkdir(exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
    os.replace(tmp, path)


def update_record(output: Path, **changes) -> dict:
    record = read_record(output) or {}
    record.update(changes)
    write_record(output, record)
    return record


def mark_done(output: str | Path, index: int) -> None:
    """Record block `index` as finished (call after its data is written)."""
    (Path(output) / STATE_DIR / DONE / str(index)).touch()


def done_blocks(output: Path) -> set[int]:
    folder = Path(output) / STATE_DIR / DONE
    if not folder.is_dir():
        return set()
    return {int(p.name) for p in folder.iterdir() if p.name.isdigit()}


def claim_creation(output: Path) -> bool:
    """True if this process created the output folder (and so must set it up).

    os.mkdir is atomic, also on network file systems, so of several job-array
    parts starting at once exactly one sets the output up; the others wait for
    its run record (`wait_for_record`).
    """
    try:
        os.mkdir(output)
        return True
    except FileExistsError:
        return False


def wait_for_record(output: Path, timeout: float = 600.0, poll: float = 0.5) -> dict:
    """The run record of an output another process is setting up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = read_record(output)
        if record is not None:
            return record
        if not Path(output).exists():
            raise ResumeError(
                f"{output} was removed while another process was setting it up (it failed: see its "
                "error); fix the cause and start again"
            )
        time.sleep(poll)
    raise ResumeError(
        f"{output} exists but holds no biounet run record after {timeout:.0f} s: another process "
        "may have died while setting it up; pass --overwrite to start again"
    )


def compare(record: dict, wanted: dict) -> list[str]:
    """Names of the result-determining parameters that differ."""
    return sorted(k for k in wanted if record.get("params", {}).get(k) != wanted[k])
