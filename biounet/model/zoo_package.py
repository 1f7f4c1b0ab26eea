"""bioimage.io (BioImage Model Zoo) packages as models: telling a package from other paths,
cheaply (without importing torch or bioimageio), so the CLI can decide what a path is.
`biounet.model.zoo_load` runs one through biounet's tiled engine; `biounet.zoo.export`
writes one from a biounet model.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

RDF_NAMES = ("rdf.yaml", "bioimageio.yaml")


class ZooNotInstalled(RuntimeError):
    """bioimageio.spec / bioimageio.core are missing (the `zoo` extra)."""


def require_bioimageio(what: str) -> None:
    """Raise ZooNotInstalled (one line: how to install) unless bioimageio can be imported."""
    try:
        import bioimageio.core  # noqa: F401
        import bioimageio.spec  # noqa: F401
    except ImportError as err:
        raise ZooNotInstalled(f"{what} needs bioimageio.spec and bioimageio.core ({err}): "
                              "pip install 'biounet[zoo]'") from None


def is_rdf_name(name: str) -> bool:
    """Whether a file name is a bioimage.io description's (rdf.yaml, bioimageio.yaml, x.bioimageio.yaml)."""
    return name in RDF_NAMES or name.endswith(".bioimageio.yaml")


def is_package(path: str | Path) -> bool:
    """Whether `path` is a bioimage.io model: a zip with an rdf.yaml (or bioimageio.yaml)
    at its top, such a YAML file itself, or a folder holding one."""
    path = Path(path)
    if path.is_dir():
        return any(is_rdf_name(p.name) for p in path.iterdir() if p.is_file())
    if path.suffix.lower() in (".yaml", ".yml"):
        return True
    if path.is_file() and zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                return any(is_rdf_name(name) for name in zf.namelist())
        except (OSError, zipfile.BadZipFile):
            return False
    return False
