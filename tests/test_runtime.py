"""The process set-up: glibc malloc tuned for torch's large CPU tensors."""

import os
import subprocess
import sys

import pytest

from biounet.runtime.process import allocator

# Defines arenas(path): the number of malloc arenas (heaps) now, from glibc's malloc_info.
ARENAS = """
import ctypes

def arenas(path):
    libc = ctypes.CDLL("libc.so.6")
    libc.fopen.restype = ctypes.c_void_p
    libc.malloc_info.argtypes = (ctypes.c_int, ctypes.c_void_p)
    libc.fclose.argtypes = (ctypes.c_void_p,)
    f = libc.fopen(path.encode(), b"w")
    libc.malloc_info(0, f)
    libc.fclose(f)
    return open(path).read().count("<heap nr=")
"""

PROBE = ARENAS + """
import ctypes, json, sys, threading
import numpy as np
from biounet.runtime.process import allocator, tune_malloc

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
tuned = tune_malloc()
before = libc.mallinfo2().hblkhd
block = np.ones(16 * 1024**2, np.uint8)  # 16 MiB: mmapped by default glibc, from the heap once tuned
mapped = libc.mallinfo2().hblkhd - before

def work(barrier=threading.Barrier(4)):
    kept = [np.ones(1000) for _ in range(100)]  # each thread allocates, all at once
    barrier.wait()

threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps({"tuned": tuned, "again": tune_malloc(), "allocator": allocator(), "mapped": mapped,
                  "arenas": arenas(sys.argv[1])}))
"""


def probe(tmp_path, **env: str) -> dict:
    import json

    out = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "malloc_info.xml")], capture_output=True,
                         text=True, timeout=120, env={**os.environ, **env})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc is Linux's")
def test_tune_malloc_keeps_large_blocks_in_one_heap(tmp_path):
    assert allocator().startswith("glibc")  # the machines biounet is tested on
    tuned = probe(tmp_path)
    assert tuned["tuned"] and tuned["again"] and tuned["allocator"] == "glibc (tuned)"
    assert tuned["mapped"] < 1024**2
    assert tuned["arenas"] == 1  # the threads started after tuning share the main arena
    plain = probe(tmp_path, BIOUNET_TUNE_MALLOC="0")
    assert not plain["tuned"] and plain["allocator"] == "glibc"
    assert plain["mapped"] >= 16 * 1024**2
    assert plain["arenas"] > 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc is Linux's")
def test_prepare_tunes_malloc_on_the_cpu():
    code = ("import torch; from biounet.model.unet import UNet, UNetConfig; from biounet.predict.device import prepare;"
            "from biounet.runtime.process import allocator; prepare(UNet(UNetConfig(width=4, depth=2)), torch.device('cpu'));"
            "print(allocator())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "glibc (tuned)"


SEGMENT_ARENAS = ARENAS + """
import sys
from biounet.pipeline.segment import segment

segment(sys.argv[1], sys.argv[2], model=sys.argv[3], block=256, progress=False)
print(arenas(sys.argv[4]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc is Linux's")
def test_segment_runs_every_thread_in_one_malloc_arena(shared_data, tiny_model, tmp_path):
    """Readers, writers, zarr's I/O loop and the labelling threads share one heap (peak RSS)."""
    image = sorted((shared_data / "bbbc039" / "val" / "images").glob("*.tif"))[0]

    def arenas(**env: str) -> int:
        out = subprocess.run([sys.executable, "-c", SEGMENT_ARENAS, str(image), str(tmp_path / f"{env}.ome.zarr"),
                              str(tiny_model), str(tmp_path / "malloc_info.xml")],
                             capture_output=True, text=True, timeout=300, env={**os.environ, **env})
        assert out.returncode == 0, out.stderr
        return int(out.stdout.split()[-1])

    assert arenas() == 1
    assert arenas(BIOUNET_TUNE_MALLOC="0") > 1
