"""Segmenting an in-memory array (numpy or dask): `segment(array, output, axes=...)`.

The pipeline reads its input by path in every worker, so the array is first
written to a zarr store beside the output, `.<output name>.input-<token>.zarr`.
Its name comes from the array's dask token (for numpy: a hash of the data),
so rerunning the same call after an interrupted run finds the same input and
resumes; another array is another input, and resuming it is refused as a
change of parameters. The store is removed once the run completes or fails
other than resumably; after a cancel (Interrupted) or a failed block it stays
for the resume (a resume without it stages the array again).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Callable

STAGE_CHUNK = 1024


def staged_path(array: Any, output: str | os.PathLike) -> Path:
    """Where `array` is written for the run into `output`."""
    from dask.base import tokenize

    output = Path(output)
    return output.parent / f".{output.name}.input-{tokenize(array)[:16]}.zarr"


def stage(array: Any, output: str | os.PathLike, axes: str | None) -> Path:
    """Write `array` into its staging store (unless a previous run already did) and return its path."""
    import dask.array as da
    import numpy as np
    import zarr

    from biounet.read.image import check_pixel_type

    path = staged_path(array, output)
    if path.exists():
        return path
    if not hasattr(array, "shape") or not hasattr(array, "dtype"):
        array = np.asarray(array)
    check_pixel_type(np.dtype(array.dtype), "the array")
    if axes and len(axes) != array.ndim:
        from biounet.read.image import ImageUsageError

        raise ImageUsageError(f"axes {axes!r} has {len(axes)} letters but the array has {array.ndim} dimensions")
    names = (axes or "").lower()
    chunks = tuple(
        n if (names and names[i] == "c") else min(n, STAGE_CHUNK) if i >= array.ndim - 2 else 1
        for i, n in enumerate(array.shape)
    )
    lazy = array if isinstance(array, da.Array) else da.from_array(array, chunks=chunks)
    partial = path.with_name(path.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    target = zarr.create_array(store=str(partial), shape=array.shape, chunks=chunks, dtype=array.dtype,
                               fill_value=0, zarr_format=2)
    da.store(lazy.rechunk(chunks), target, lock=False)
    os.replace(partial, path)
    return path


def segment_array(run: Callable, array: Any, output: str | os.PathLike, **options):
    """`run` (biounet.pipeline.segment.segment) on `array` staged beside `output` (see module docstring)."""
    from biounet.pipeline.errors import Interrupted, TaskError

    staged = stage(array, output, options.get("axes"))
    try:
        result = run(staged, output, **options)
    except (Interrupted, TaskError):
        if not Path(output).exists():  # nothing to resume
            shutil.rmtree(staged, ignore_errors=True)
        raise
    except BaseException:  # nothing of this run to resume (a resume stages the array again)
        shutil.rmtree(staged, ignore_errors=True)
        raise
    if not options.get("part"):
        shutil.rmtree(staged, ignore_errors=True)
    return result
