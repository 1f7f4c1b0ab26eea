"""Running a run's tasks on Dask workers: an existing scheduler, a local process
cluster, or a dask-jobqueue cluster (SLURM, PBS, LSF) configured through Dask's
config system (see workflows/dask/jobqueue.yaml).

The same task graph as a local run (`biounet.pipeline.graph`), one Dask task per
task, with the same dependencies. Tasks carry only the small picklable `Run`;
each worker process opens the slide and loads the model once and reuses them.
Only prediction tasks ask for the `GPU` worker resource (`biounet.resources` in
the Dask config): labelling, pyramids and the table run on any worker.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable

import dask

from biounet.pipeline.graph import Graph, Task
from biounet.plan.run import Run

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


_OPEN: dict[str, object] = {}
_OPEN_LOCK = threading.Lock()


def _resources(run: Run):
    """The worker process's opened run (image, network, output), made once."""
    from biounet.pipeline.stages import Resources

    key = json.dumps([run.output, run.params, run.stats], sort_keys=True, default=str)
    with _OPEN_LOCK:
        if key not in _OPEN:
            _OPEN.clear()
            _OPEN[key] = (Resources(run, threads=run.threads), Graph(run))
        return _OPEN[key]


def run_task(run: Run, task: Task, *_dependencies) -> str:
    """One task on a worker (the unit of work of distributed runs); the worker's address."""
    from dask.distributed import get_worker

    from biounet.pipeline.local import execute

    res, graph = _resources(run)
    execute(res, graph, task)
    return get_worker().address


def run_dask(run: Run, graph: Graph, todo: Iterable[Task], scheduler: str | None, cluster: str | None, workers: int,
             on_done: Callable[[Task, float | None], None] | None = None,
             cancel: threading.Event | None = None) -> dict[Task, str]:
    """Run `todo` (their other dependencies done) as Dask tasks with the graph's dependencies;
    the address of the worker that ran each."""
    from dask.distributed import as_completed

    from biounet.pipeline.errors import task_failure
    from biounet.runtime.devices import cpu_threads

    todo = sorted(todo, key=lambda t: (_ORDER[t.stage], t.index))
    if cluster == "local":  # torch threads: the cores shared among the worker processes
        from dataclasses import replace

        run = replace(run, threads=max(1, cpu_threads() // workers))
    client, owned = make_client(scheduler, cluster, workers)
    try:
        print(f"dask dashboard: {client.dashboard_link}", flush=True)
        gpu = gpu_resources()
        token = abs(hash((run.output, id(todo))))
        futures: dict[Task, object] = {}
        by_key = {}
        for task in todo:
            deps = [futures[d] for d in graph.deps[task] if d in futures]
            fut = client.submit(run_task, run, task, *deps, key=f"biounet-{task.stage}-{task.index}-{token}",
                                resources=gpu if task.needs_gpu else None, pure=False)
            futures[task] = fut
            by_key[fut.key] = task
        where: dict[Task, str] = {}
        for fut in as_completed(list(futures.values())):
            task = by_key[fut.key]
            if fut.status == "error" or (cancel is not None and cancel.is_set()):
                err = fut.exception() if fut.status == "error" else KeyboardInterrupt()
                for other in futures.values():
                    other.cancel()
                if isinstance(err, KeyboardInterrupt):
                    raise err
                block = graph.block_of(task)
                raise task_failure(task, run.blocks[block] if block is not None and task.stage != "pyramid" else None,
                                   err)
            where[task] = fut.result()
            if on_done is not None:
                on_done(task, None)
        return where
    finally:
        client.close()
        if owned is not None:
            owned.close()


_ORDER = {s: i for i, s in enumerate(("predict", "pass1", "merge", "pass2", "pyramid", "table", "metadata"))}
