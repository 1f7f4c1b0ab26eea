"""Virtual environments holding bioimage.io's own tools and nothing of biounet, to run
`bioimageio test PACKAGE` on exported packages as a user does before uploading one.

    python tests/zoo/bioimageio_venvs.py [NAME ...] [--rebuild]

pinned: bioimageio.core and what it pulls in at the project's pins (constraints.txt:
pydantic 2.12.5). latest: `pip install bioimageio.core` as pip resolves it today (the
newest pydantic; bioimageio.core 0.11.0 pins bioimageio.spec 0.5.12.0, which fails
every model under pydantic >= 2.14). latest-spec: latest with the newest
bioimageio.spec installed over it (0.5.14 mended that). All take torch==2.13.0, the
CPU build on this machine's disk (a looser torch requirement downloads a CUDA build
of several GB). They live in `.venv-bioimageio/NAME` (ignored by git), about 1.4 GB
each, built in about 95 s each on a quiet 2-core machine here (140-400 s beside other
work), and are reused while their requirements are unchanged. Building latest-spec
makes pip report that bioimageio.core wants bioimageio.spec 0.5.12.0: expected.
tests/zoo/test_bioimageio_cli.py and .ci/run share this script.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HOME = ROOT / ".venv-bioimageio"
CONSTRAINTS = ROOT / "constraints.txt"
TORCH = "torch==2.13.0"
LATEST = [["bioimageio.core", TORCH]]
# pip install steps (arguments of `pip install`) of each venv
STEPS = {
    "pinned": [["-c", str(CONSTRAINTS), "bioimageio.core", TORCH]],
    "latest": LATEST,
    "latest-spec": LATEST + [["--upgrade", "bioimageio.spec"]],
}
REPORTED = ("bioimageio.core", "bioimageio.spec", "pydantic", "torch")


def venv_path(name: str) -> Path:
    return HOME / name


def stamp(name: str) -> str:
    """What a venv is built from: its steps and, for `pinned`, the pins themselves."""
    steps = [[a for a in step if a != str(CONSTRAINTS)] for step in STEPS[name]]
    return json.dumps({"steps": steps, "pins": CONSTRAINTS.read_text() if name == "pinned" else ""})


def ensure(name: str, rebuild: bool = False) -> Path:
    """The venv `name`, built first if it is missing, stale or `rebuild`; its folder."""
    folder = venv_path(name)
    marker = folder / ".built"
    if not rebuild and marker.is_file() and marker.read_text() == stamp(name):
        return folder
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(folder)], check=True)
    for step in STEPS[name]:
        # -qq: pip's warnings about this machine's local index folders would drown the output
        subprocess.run([str(folder / "bin" / "python"), "-m", "pip", "install", "-qq", *step], check=True)
    marker.write_text(stamp(name))
    print(f"built {folder} in {time.monotonic() - start:.0f} s", file=sys.stderr)
    return folder


def versions(folder: Path) -> dict[str, str]:
    """The versions of bioimageio.core, bioimageio.spec, pydantic and torch in a venv."""
    code = ("import json, importlib.metadata as m; "
            f"print(json.dumps({{n: m.version(n) for n in {list(REPORTED)!r}}}))")
    out = subprocess.run([str(folder / "bin" / "python"), "-c", code], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def versions_line(folder: Path) -> str:
    return ", ".join(f"{k} {v}" for k, v in versions(folder).items())


if __name__ == "__main__":
    args = sys.argv[1:]
    if any(a not in STEPS and a != "--rebuild" for a in args):
        sys.exit(__doc__.split("\n\n")[1].strip())
    for venv in [a for a in args if a in STEPS] or list(STEPS):
        print(f"{venv}: {ensure(venv, rebuild='--rebuild' in args)} ({versions_line(venv_path(venv))})")
