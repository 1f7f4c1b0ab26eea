"""Models by name: `--model nuclei|membranes|he-nuclei|nuclei-general|PATH`.

The package ships model files in `biounet/weights/NAME.pt`. A model argument
is resolved in this order:

1. an existing path: that file (or bioimage.io package folder); a path always wins over a name;
2. a registered name (`SHIPPED`): `weights/NAME.pt`, or a one-line error saying
   that this build does not ship it (dropping `NAME.pt` into `biounet/weights/`
   is all it takes to ship it);
3. anything else is a path that does not exist: the model loader says so and
   lists the names.

No heavy imports: the CLI resolves names before it loads torch.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"

# name -> what it segments (the MODEL_CARD has a section per model)
SHIPPED: dict[str, str] = {
    "nuclei": "fluorescent nuclei (BBBC039: U2OS, Hoechst), instances",
    "membranes": "neuronal membranes in serial-section EM (ISBI 2012), cell interiors",
    "he-nuclei": "nuclei in H&E brightfield (MoNuSeg), instances; the default for RGB brightfield slides",
    "nuclei-general": "fluorescent nuclei of many labs (BBBC039 + DSB2018 fluorescence, scales 0.5-2x), instances",
}
DEFAULT = "nuclei"
# name -> what its objects are called in QuPath (`biounet export-geojson`'s default class)
OBJECTS: dict[str, str] = {"nuclei": "Nucleus", "membranes": "Cell", "he-nuclei": "Nucleus", "nuclei-general": "Nucleus"}


class ModelNameError(ValueError):
    """A model name this build does not ship (a usage error)."""


def shipped_path(name: str) -> Path:
    """Where the shipped model `name` lives (whether or not this build has it)."""
    return WEIGHTS / f"{name}.pt"


def shipped() -> list[str]:
    """Names whose model file is in this build."""
    return [name for name in SHIPPED if shipped_path(name).is_file()]


def describe_names() -> str:
    """The names for an error message: those shipped, and those missing from this build."""
    have = shipped()
    missing = [n for n in SHIPPED if n not in have]
    text = ", ".join(have) if have else "none"
    return text + (f"; not in this build: {', '.join(missing)}" if missing else "")


def resolve_model(model: str | os.PathLike | None) -> Path:
    """The model file of a path or a shipped name (None: the default, `nuclei`).

    Raises ModelNameError for a registered name this build does not ship. A
    string that is neither a file nor a name comes back as a path; loading it
    reports it missing, with the names.
    """
    if model is None or str(model) == "":
        model = DEFAULT
    path = Path(model)
    if path.exists():  # a file, or an unpacked bioimage.io package's folder
        return path
    name = str(model)
    if name in SHIPPED:
        target = shipped_path(name)
        if target.is_file():
            return target
        others = [n for n in shipped() if n != name]
        instead = f", or use {' or '.join(others)}" if others else ""
        raise ModelNameError(f"model '{name}' is not shipped in this build ({target.name} is not in {WEIGHTS}); "
                             f"pass a model file with --model PATH{instead}")
    return path


def file_digest(path: Path) -> str:
    """sha256 of a file, read in 1 MiB pieces; of a folder (an unpacked bioimage.io package),
    of its files' names and digests."""
    h = hashlib.sha256()
    if path.is_dir():
        for p in sorted(q for q in path.rglob("*") if q.is_file()):
            h.update(f"{p.relative_to(path).as_posix()}\0{file_digest(p)}\n".encode())
        return h.hexdigest()
    with open(path, "rb") as f:
        for piece in iter(lambda: f.read(1 << 20), b""):
            h.update(piece)
    return h.hexdigest()


def shipped_name(sha256: str | None) -> str | None:
    """The shipped model whose file has this sha256 (as an output's run records it), if any."""
    return next((name for name in shipped() if sha256 and file_digest(shipped_path(name)) == sha256), None)
