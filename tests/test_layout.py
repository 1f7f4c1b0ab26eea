"""The package's layout follows a pixel's way: each folder imports only itself and the folders
upstream of it, no two modules import each other (directly or round a circle), and the top of
the package holds only the public API, the CLI and the folders."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "biounet"

# Upstream first. A folder may import any folder before it, never one after it.
FLOW = [
    "runtime",   # the process: devices and cores, allocator, warnings
    "read",      # slides and annotated images in
    "model",     # networks, model files, shipped models, bioimage.io packages as models
    "plan",      # every argument checked; blocks, tiles, layout, memory
    "predict",   # a block's window through the network to a class map
    "label",     # instances, block by block
    "measure",   # the object table
    "write",     # the OME-Zarr, pyramids, metadata, run records
    "pipeline",  # the conductor: `segment`, its task graph and runners
    "evaluate",  # scores of a model on annotated images
    "train",     # training (validates with evaluate)
    "zoo",       # bioimage.io packages written from models
    "napari",    # the napari plugin and viewer
    "demo",      # the sample mosaic and `make demo`
]
TOP_LEVEL = {"__init__.py", "__main__.py", "cli.py"}


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the biounet modules it imports anywhere in its source (functions included)."""
    mods = modules()

    def known(name: str) -> str:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name

    graph = {}
    for name, path in mods.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps |= {known(a.name) for a in node.names if a.name.startswith("biounet")}
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("biounet"):
                for a in node.names:
                    full = f"{node.module}.{a.name}"
                    deps.add(full if full in mods else known(node.module))
        graph[name] = {d for d in deps if d and d not in (name, "biounet")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def folder(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir()) else None


def test_no_module_imports_itself_round_a_circle():
    assert cycles(import_graph()) == []


def test_the_circle_finder_finds_circles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_folders_import_only_upstream():
    rank = {name: i for i, name in enumerate(FLOW)}
    wrong = []
    for module, deps in import_graph().items():
        here = folder(module)
        if here is None:  # the API, the CLI: they may import anything
            continue
        for dep in deps:
            there = folder(dep)
            if there is not None and rank[there] > rank[here]:
                wrong.append(f"{module} -> {dep}")
    assert wrong == []


def test_every_folder_has_its_place_in_the_flow():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders == set(FLOW)


def test_the_top_holds_only_the_api_the_cli_and_folders():
    loose = {p.name for p in PACKAGE.glob("*.py")}
    assert loose == TOP_LEVEL


@pytest.mark.parametrize("package", ["biounet", *(f"biounet.{name}" for name in FLOW)])
def test_importing_a_folder_loads_no_heavy_library(package):
    """Folders' __init__ files import nothing, so the CLI's cheap modules (names, outputs,
    options) stay cheap whatever folder they live in."""
    import subprocess
    import sys

    code = (f"import sys, {package}; heavy = [m for m in ('torch', 'zarr', 'dask', 'scipy', 'numpy') "
            "if m in sys.modules]; print(','.join(heavy))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
