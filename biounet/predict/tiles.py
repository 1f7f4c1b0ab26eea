"""Predict one block: cut aligned tiles from its mirrored input window, batch them
through the network, and assemble the block's output.

Out of memory on the device is not fatal: the block is retried with half the
batch, and once a single tile does not fit, with a smaller valid tile. All
valid tiles of a network have output sizes congruent modulo the shift period,
so the smaller tiles still start on aligned positions inside the window read
for the original tile, and the tiling invariance keeps the result the same.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from biounet.model.geometry import TileSizes
from biounet.plan.blocks import Block, tile_window
from biounet.predict.device import run
from biounet.runtime.notices import BiounetWarning


class DeviceMemoryError(MemoryError):
    """Out of memory even with the smallest tile and a batch of one."""


def is_out_of_memory(err: BaseException) -> bool:
    """Whether `err` says the device (GPU or CPU) ran out of memory."""
    if isinstance(err, MemoryError) and not isinstance(err, DeviceMemoryError):
        return True
    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(err, oom):
        return True
    if isinstance(err, RuntimeError):
        text = str(err).lower()
        return "out of memory" in text or "can't allocate memory" in text or "cannot allocate memory" in text
    return False


def smaller_tile(tile_in: int, geometry: TileSizes) -> int | None:
    """A valid tile with about half the output of `tile_in` (None: already the smallest
    that still covers one shift period)."""
    smallest = geometry.input_size(geometry.align)
    if tile_in <= smallest:
        return None
    half = geometry.output_size(tile_in) // 2 + 2 * geometry.margin
    return max(smallest, min(geometry.nearest_valid(half, "down"), tile_in - geometry.align))


def predict_block(net: torch.nn.Module, window: np.ndarray, block: Block, tile_in: int, geometry: TileSizes,
                  batch_size: int, fallback: dict | None = None) -> torch.Tensor:
    """Network output (C_out, H, W), float32 on the network's device, of `block` from its
    normalised input `window` (C, h, w).

    The window starts `margin` pixels above/left of the block and was read for
    `tile_in` (as `tile_window` says). On out of memory the block is retried with
    half the batch, then with smaller tiles cut from the same window; `fallback`
    (a dict the caller keeps between blocks) remembers the settings that worked,
    so later blocks start with them instead of running out of memory again.
    """
    state = fallback if fallback is not None else {}
    tile = min(tile_in, state.get("tile", tile_in))
    batch = min(batch_size, state.get("batch", batch_size))
    while True:
        try:
            out = _predict_tiles(net, window, block, tile_in, tile, geometry, batch)
        except Exception as err:
            if not is_out_of_memory(err):
                raise
            _free_device_memory(net)
            if batch > 1:
                new_tile, new_batch = tile, batch // 2
            else:
                new_tile, new_batch = smaller_tile(tile, geometry), 1
                if new_tile is None:
                    raise DeviceMemoryError(
                        f"out of memory even with tile {tile} and batch 1; use a smaller --block, "
                        "free memory on the device, or run with --device cpu"
                    ) from err
            warnings.warn(
                f"out of memory with tile {tile} and batch {batch} on block {block.key()}; "
                f"retrying with tile {new_tile} and batch {new_batch}",
                BiounetWarning, stacklevel=2,
            )
            tile, batch = new_tile, new_batch
            state.update(tile=tile, batch=batch)
            continue
        return out


def _free_device_memory(net: torch.nn.Module) -> None:
    try:
        if next(net.parameters()).device.type == "cuda":
            torch.cuda.empty_cache()
    except StopIteration:
        pass


def _predict_tiles(net: torch.nn.Module, window: np.ndarray, block: Block, window_tile: int, tile_in: int,
                   geometry: TileSizes, batch_size: int) -> torch.Tensor:
    """`predict_block` with one tile size and batch; `window` was read for `window_tile`."""
    _, _, _, _, ys, xs = tile_window(block, tile_in, geometry)
    tile_out = geometry.output_size(tile_in)
    m = geometry.margin
    oy, ox = block.y0 - m, block.x0 - m  # slide coordinates of window[0, 0]
    if ys[-1] + tile_out + m - oy > window.shape[-2] or xs[-1] + tile_out + m - ox > window.shape[-1]:
        raise ValueError(f"tile {tile_in} does not fit the window read for tile {window_tile}")
    tiles = [(ty, tx) for ty in ys for tx in xs]
    out = None
    source = torch.from_numpy(np.ascontiguousarray(window, dtype=np.float32))
    device = _device_of(net)
    if device.type == "cuda":  # the window crosses once, from pinned memory, without blocking the host
        source = source.pin_memory().to(device, non_blocking=True)
    for i in range(0, len(tiles), batch_size):
        batch = tiles[i : i + batch_size]
        crops = [source[:, ty - m - oy : ty - m - oy + tile_in, tx - m - ox : tx - m - ox + tile_in] for ty, tx in batch]
        x = crops[0][None] if len(crops) == 1 else torch.stack(crops)
        y = run(net, x).float()
        if y.shape[-1] != tile_out:  # a same-padded network (or a halo to crop): keep the centre
            cy, cx = (y.shape[-2] - tile_out) // 2, (y.shape[-1] - tile_out) // 2
            y = y[..., cy : cy + tile_out, cx : cx + tile_out]
        if len(tiles) == 1:  # one tile covers the block (the usual case): its top-left part is the block
            return y[0, :, : block.y1 - block.y0, : block.x1 - block.x0]
        if out is None:
            out = torch.empty((y.shape[1],) + block.shape, dtype=torch.float32, device=y.device)
        for (ty, tx), tile in zip(batch, y):
            h = min(tile_out, block.y1 - ty)
            w = min(tile_out, block.x1 - tx)
            out[:, ty - block.y0 : ty - block.y0 + h, tx - block.x0 : tx - block.x0 + w] = tile[:, :h, :w]
    return out


def _device_of(net: torch.nn.Module) -> torch.device:
    try:
        return next(net.parameters()).device
    except StopIteration:
        return torch.device("cpu")
