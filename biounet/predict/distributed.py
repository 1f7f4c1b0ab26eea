"""Running blocks on Dask workers: an existing scheduler, a local process
cluster, or a dask-jobqueue cluster (SLURM, PBS, LSF) configured through Dask's
config system (see workflows/dask/jobqueue.yaml).

Tasks carry only the small picklable `Job` and a `Block`; each worker process
opens the slide and loads the model once (`engine.context`) and reuses them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import dask

from biounet.plan.blocks import Block
from biounet.predict.device import cpu_threads
from biounet.predict.engine import Job, process_block

JOBQUEUE = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "lsf": "LSFCluster"}


def make_client(scheduler: str | None, cluster: str | None, workers: int):
    """A dask.distributed Client for an address, or for a cluster this call starts."""
    from dask.distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler), None
    if cluster == "local":
        c = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0")
        return Client(c), c
    if cluster in JOBQUEUE:
        dask_jobqueue = import_jobqueue()
        c = getattr(dask_jobqueue, JOBQUEUE[cluster])()
        c.scale(jobs=workers)
        return Client(c), c
    raise ValueError(f"unknown --cluster {cluster!r}: use local, slurm, pbs or lsf")


def import_jobqueue():
    """dask_jobqueue, imported without its side effect on Ctrl-C.

    Importing it (its runner module) makes SIGINT call sys.exit(), which would turn
    Ctrl-C during a run into a silent exit with status 0 instead of biounet's
    "interrupted; N blocks kept, rerun to resume" (exit 130).
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        import dask_jobqueue

        return dask_jobqueue
    handler = signal.getsignal(signal.SIGINT)
    try:
        import dask_jobqueue
    finally:
        signal.signal(signal.SIGINT, handler)
    return dask_jobqueue


def gpu_resources() -> dict | None:
    """Worker resources the prediction tasks require (`biounet.resources` in the Dask config)."""
    resources = dask.config.get("biounet.resources", default=None)
    return dict(resources) if resources else None


def run_distributed(
    job: Job, blocks: Iterable[Block], scheduler: str | None, cluster: str | None, workers: int,
    on_done: Callable[[Block], None] | None = None,
) -> None:
    """Process `blocks` as Dask tasks; each task reads, predicts and writes its block."""
    from dask.distributed import as_completed

    from biounet.predict.engine import block_failure

    blocks = list(blocks)
    if cluster == "local":
        job = _with_threads(job, max(1, cpu_threads() // workers))
    client, owned = make_client(scheduler, cluster, workers)
    try:
        print(f"dask dashboard: {client.dashboard_link}", flush=True)
        by_key = {}
        futures = []
        for block in blocks:
            fut = client.submit(process_block, job, block, key=f"biounet-{block.index}-{id(job)}",
                                resources=gpu_resources(), pure=False)
            by_key[fut.key] = block
            futures.append(fut)
        for fut in as_completed(futures):
            block = by_key[fut.key]
            if fut.status == "error":
                err = fut.exception()
                for other in futures:
                    other.cancel()
                raise block_failure(block, err)
            if on_done is not None:
                on_done(block)
    finally:
        client.close()
        if owned is not None:
            owned.close()


def _with_threads(job: Job, threads: int) -> Job:
    from dataclasses import replace

    return replace(job, threads=threads)
