"""One measurement of network speed in a fresh process (so the allocator can differ).

    python -m benchmarks.network_child --variant channels_last --tile 572 --width 16 --ceiling 2048
    python -m benchmarks.network_child --sgemm 4096

Prints JSON: seconds of each timed call, the first call's seconds, FLOPs per call
and, with --ceiling N, the best N x N float32 matrix product's FLOP/s in this same
process, timed before and after the network's calls (the ceiling it is compared
with, under the same conditions).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from biounet.model.config import UNetConfig
from biounet.model.flops import forward_flops
from biounet.model.unet import UNet
from biounet.runtime.devices import cpu_threads
from biounet.runtime.process import allocator, tune_malloc

VARIANTS = ("nchw", "channels_last", "compile")


def network(variant: str, config: UNetConfig):
    net = UNet(config).eval()
    if variant == "nchw":
        return net, lambda x: x
    net = net.to(memory_format=torch.channels_last)
    fmt = lambda x: x.contiguous(memory_format=torch.channels_last)  # noqa: E731
    if variant == "compile":
        net = torch.compile(net, options={"freezing": True})
    return net, fmt


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--variant", choices=VARIANTS, default="channels_last")
    p.add_argument("--tile", type=int, default=572)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--out-channels", type=int, default=3)
    p.add_argument("--calls", type=int, default=3)
    p.add_argument("--sgemm", type=int, help="time an N x N float32 matrix product instead")
    p.add_argument("--ceiling", type=int, help="also time an N x N matrix product around the calls")
    p.add_argument("--tune-malloc", action="store_true", help="glibc malloc tuned as biounet runs it")
    args = p.parse_args()
    if args.tune_malloc and not tune_malloc():
        raise SystemExit("--tune-malloc: glibc malloc could not be tuned in this process")
    torch.set_num_threads(cpu_threads())
    if args.sgemm:
        flops, call = sgemm(args.sgemm)
    else:
        config = UNetConfig(width=args.width, out_channels=args.out_channels)
        net, fmt = network(args.variant, config)
        x = fmt(torch.randn(args.batch, 1, args.tile, args.tile))
        flops = forward_flops(config, args.tile, args.batch)

        def call():
            with torch.inference_mode():
                return net(x)
    ceiling = []
    if args.ceiling:
        ceiling += best_rate(*sgemm(args.ceiling), calls=4)
    start = time.perf_counter()
    call()
    first = time.perf_counter() - start
    times = []
    for _ in range(args.calls):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    if args.ceiling:
        ceiling += best_rate(*sgemm(args.ceiling), calls=4)
    print(json.dumps({"times": times, "first": first, "flops": flops, "allocator": allocator(),
                      "threads": torch.get_num_threads(), "ceiling": max(ceiling) if ceiling else None}))


def sgemm(n: int):
    """FLOPs and a call of an n x n float32 matrix product."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3, lambda: torch.mm(a, b)


def best_rate(flops: int, call, calls: int) -> list[float]:
    """FLOP/s of the fastest of `calls` calls after one untimed call."""
    call()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return [flops / min(times)]


if __name__ == "__main__":
    main()
