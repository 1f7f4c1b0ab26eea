"""The run folder `OUT/.biounet`: what a run has finished, durably, so a killed run resumes.

Everything in it is a valid zarr node of the output's own zarr format, so zarr,
ome-zarr-py and napari walk the output without warnings:

- the group's attributes: the run record (parameters that determine the
  result, normalisation statistics, batch, status), written atomically;
- `records/<kind>`: per-task records (a block's class-map bands, its pass-1
  labels, its object-table part; the merge), each a row of a uint8 array
  (length-prefixed bytes in zstd chunks of 256 KiB); the row's first chunk is
  written last, so its existence says the task is done;
- `done/<stage>`: for tasks without a record (pyramid blocks, the table,
  metadata), one uint8 array per stage with one-element chunks: the chunk of
  task i exists once task i finished (zarr does not write empty chunks by
  default, so a missing data chunk could not say "not done");
- `lock`: a group whose attributes name the run that is writing the output.

Markers and records are written atomically (a temporary file, then a rename),
after the task's data, so a kill at any moment leaves either a finished task
or one to redo.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

RUN_FOLDER = ".biounet"
RECORD_CHUNK = 1 << 18
RECORD_MAX = 1 << 40
HEARTBEAT = 20.0  # seconds between lock refreshes
STALE = 120.0  # a lock not refreshed for this long belongs to a dead run


class ResumeError(ValueError):
    """An existing output that this run cannot continue."""


class BusyError(ResumeError):
    """The output is being written by another run."""


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _group_meta(zarr_format: int, attrs: dict) -> dict[str, bytes]:
    """Files of a zarr group with `attrs` (v2: .zgroup + .zattrs; v3: zarr.json)."""
    if zarr_format == 2:
        return {".zgroup": b'{"zarr_format": 2}', ".zattrs": json.dumps(attrs, indent=1, sort_keys=True).encode()}
    meta = {"zarr_format": 3, "node_type": "group", "attributes": attrs}
    return {"zarr.json": json.dumps(meta, indent=1, sort_keys=True).encode()}


def write_group(path: Path, zarr_format: int, attrs: dict) -> None:
    """Create or update a zarr group folder with `attrs`, each file written atomically."""
    path.mkdir(parents=True, exist_ok=True)
    for name, data in _group_meta(zarr_format, attrs).items():
        _atomic_write(path / name, data)


def read_group_attrs(path: Path, zarr_format: int) -> dict | None:
    """A group's attributes as `write_group` wrote them (None if there is none)."""
    try:
        if zarr_format == 2:
            return json.loads((path / ".zattrs").read_text())
        return json.loads((path / "zarr.json").read_text()).get("attributes", {})
    except FileNotFoundError:
        return None


def zarr_format_of(output: Path) -> int | None:
    """The zarr format of an existing output (None if it holds no zarr group yet)."""
    if (Path(output) / "zarr.json").exists():
        return 3
    if (Path(output) / ".zgroup").exists():
        return 2
    return None


# Stages whose record marks them done (the others have markers in `done/<stage>`).
RECORDED = {"predict": "bands", "pass1": "pass1", "pass2": "table", "merge": "merge"}


def _flat_keys(zarr_format: int) -> dict:
    """Chunk keys "i.j" (v2) or "c.i.j" (v3): one folder per array, listed at once."""
    return {"name": "v2" if zarr_format == 2 else "default", "separator": "."}


def _key(zarr_format: int, *coords: int) -> str:
    return ("" if zarr_format == 2 else "c.") + ".".join(map(str, coords))


def read_run_record(output: str | os.PathLike) -> dict | None:
    """The run record of an output (None if it has none)."""
    fmt = zarr_format_of(Path(output))
    return RunFolder(output, fmt).read_record() if fmt else None


class RunFolder:
    """The run folder of one output (see the module doc)."""

    def __init__(self, output: str | os.PathLike, zarr_format: int) -> None:
        self.output = Path(output)
        self.path = self.output / RUN_FOLDER
        self.zarr_format = zarr_format
        self._arrays: dict[str, object] = {}
        self._lock = threading.Lock()

    # -- the run record ---------------------------------------------------------------
    def read_record(self) -> dict | None:
        attrs = read_group_attrs(self.path, self.zarr_format)
        return attrs.get("run") if attrs else None

    def write_record(self, record: dict) -> None:
        write_group(self.path, self.zarr_format, {"run": record})

    def update_record(self, **changes) -> dict:
        with self._lock:
            record = self.read_record() or {}
            record.update(changes)
            self.write_record(record)
            return record

    def clean(self) -> None:
        """Drop the markers and per-task records of a finished run (the record stays)."""
        import shutil

        for name in ("done", "records"):
            shutil.rmtree(self.path / name, ignore_errors=True)

    # -- markers ----------------------------------------------------------------------
    def create_markers(self, stage: str, count: int) -> None:
        """The marker array of a stage with `count` tasks (one-element chunks, keys flat)."""
        import zarr

        zarr.create_array(store=str(self.output), name=f"{RUN_FOLDER}/done/{stage}", shape=(max(count, 1),),
                          chunks=(1,), dtype="uint8", fill_value=0, compressors=None, zarr_format=self.zarr_format,
                          overwrite=True, chunk_key_encoding=_flat_keys(self.zarr_format))

    def _marker(self, stage: str, index: int) -> Path:
        return self.path / "done" / stage / _key(self.zarr_format, index)

    def mark(self, stage: str, index: int) -> None:
        """Record task `index` of `stage` as finished (after its results are written)."""
        _atomic_write(self._marker(stage, index), b"\x01")

    def done(self, stage: str) -> set[int]:
        """Indices of the finished tasks of `stage` (for stages with records: whose
        record is complete)."""
        if stage in RECORDED:
            return self._recorded(RECORDED[stage])
        folder = self.path / "done" / stage
        prefix = "" if self.zarr_format == 2 else "c."
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return set()
        return {int(n[len(prefix):]) for n in names if n.startswith(prefix) and n[len(prefix):].isdigit()}

    # -- records ----------------------------------------------------------------------
    def create_records(self, kind: str, count: int) -> None:
        import zarr

        zarr.create_array(store=str(self.output), name=f"{RUN_FOLDER}/records/{kind}",
                          shape=(max(count, 1), RECORD_MAX), chunks=(1, RECORD_CHUNK), dtype="uint8",
                          fill_value=0, zarr_format=self.zarr_format, overwrite=True,
                          chunk_key_encoding=_flat_keys(self.zarr_format))

    def _record_chunk(self, kind: str, index: int, piece: int) -> Path:
        return self.path / "records" / kind / _key(self.zarr_format, index, piece)

    def _recorded(self, kind: str) -> set[int]:
        """Rows of a records array whose first chunk (written last) exists."""
        prefix = "" if self.zarr_format == 2 else "c."
        try:
            names = os.listdir(self.path / "records" / kind)
        except FileNotFoundError:
            return set()
        out = set()
        for name in names:
            if name.startswith(prefix) and name.endswith(".0"):
                row = name[len(prefix) : -2]
                if row.isdigit():
                    out.add(int(row))
        return out

    def put(self, kind: str, index: int, payload: bytes) -> None:
        """Store a task's record: row `index` of the records array, its zstd chunks
        written directly, the first one last and atomically: it marks the task done."""
        import numcodecs

        data = len(payload).to_bytes(8, "little") + payload
        if len(data) > RECORD_MAX:
            raise ValueError(f"a {kind} record of {len(data)} bytes is too large")
        codec = numcodecs.Zstd(level=1)
        pieces = range(0, len(data), RECORD_CHUNK)
        for piece in reversed(range(len(pieces))):
            raw = data[pieces[piece] : pieces[piece] + RECORD_CHUNK]
            _atomic_write(self._record_chunk(kind, index, piece), codec.encode(raw + bytes(RECORD_CHUNK - len(raw))))

    def get(self, kind: str, index: int) -> bytes:
        import numcodecs

        codec = numcodecs.Zstd()
        first = bytes(codec.decode(self._record_chunk(kind, index, 0).read_bytes()))
        size = int.from_bytes(first[:8], "little")
        data = first[8:]
        piece = 1
        while len(data) < size:
            data += bytes(codec.decode(self._record_chunk(kind, index, piece).read_bytes()))
            piece += 1
        return data[:size]

    # -- the lock ---------------------------------------------------------------------
    def acquire(self, command: str, name: str = "lock", wait: bool = False) -> "Lease":
        """Take the output (or, with another `name`, one step of it) for this run, or raise
        BusyError naming the run that holds it (`wait`: wait until it is released).

        A lock whose run is gone (a dead process on this host, or no heartbeat for
        STALE seconds) is taken over.
        """
        lock = self.path / name
        self.path.mkdir(parents=True, exist_ok=True)
        tries = 0
        while tries < 3:
            tries += 0 if wait else 1
            try:
                os.mkdir(lock)
            except FileExistsError:
                holder = self._holder(lock)
                if holder is not None and holder_alive(holder) and wait:
                    time.sleep(0.5)
                    continue
                if holder is not None and holder_alive(holder):
                    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
                    raise BusyError(
                        f"output {self.output} is being written by another biounet run (pid {holder.get('pid')} "
                        f"on {holder.get('host')}, started {since}: {holder.get('command', '?')}); wait for it to "
                        "finish or stop it, then rerun to resume"
                    ) from None
                _remove_tree(lock)
                continue
            return Lease(self, lock, command)
        raise BusyError(f"cannot take the lock of {self.output}: another run keeps taking it; try again")

    def _holder(self, lock: Path) -> dict | None:
        for _ in range(20):  # a lock just made has no attributes for a moment
            attrs = read_group_attrs(lock, self.zarr_format)
            if attrs is not None:
                return attrs
            time.sleep(0.05)
        return None

    def live_holders(self, prefix: str, but: str | None = None) -> list[dict]:
        """The live runs holding a lock whose name starts with `prefix` (except `but`)."""
        try:
            names = [n for n in os.listdir(self.path) if n.startswith(prefix) and n != but]
        except FileNotFoundError:
            return []
        holders = [self._holder(self.path / n) for n in names]
        return [h for h in holders if h is not None and holder_alive(h)]

    def locked_by_other(self) -> dict | None:
        """The live run holding the lock, if any (parts check before joining a run)."""
        lock = self.path / "lock"
        if not lock.exists():
            return None
        holder = self._holder(lock)
        return holder if holder is not None and holder_alive(holder) else None


def holder_alive(holder: dict) -> bool:
    """Whether the run named in a lock still runs: its process on this host, or a
    heartbeat younger than STALE seconds elsewhere."""
    if holder.get("host") == socket.gethostname():
        try:
            os.kill(int(holder["pid"]), 0)
        except (ProcessLookupError, KeyError, ValueError):
            return False
        except PermissionError:
            return True
        return True
    return time.time() - float(holder.get("heartbeat", 0)) < STALE


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


class Lease:
    """The lock of a run folder, held and refreshed until `release`."""

    def __init__(self, folder: RunFolder, path: Path, command: str) -> None:
        self.folder, self.path = folder, path
        now = time.time()
        self.attrs = {"pid": os.getpid(), "host": socket.gethostname(), "started": now, "heartbeat": now,
                      "command": command}
        write_group(path, folder.zarr_format, self.attrs)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="biounet-lock", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT):
            self.attrs["heartbeat"] = time.time()
            try:
                write_group(self.path, self.folder.zarr_format, self.attrs)
            except OSError:
                return

    def release(self) -> None:
        self._stop.set()
        self._thread.join()
        _remove_tree(self.path)

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *exc) -> None:
        self.release()
