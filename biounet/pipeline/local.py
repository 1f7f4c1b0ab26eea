"""Running a run's tasks in this process, on every core.

The network runs predict tasks in block order on `workers` threads (torch uses
every core inside each, or the GPU); everything else is a task on a pool of
one thread per core, most urgent first: the next blocks' reads (so the
network never waits), the predicted blocks' writes, then labelling, pyramids
and the rest as their inputs appear. The CPU-side work releases the GIL
(compiled labelling loops, codecs, numpy), so the threads run in parallel
without the start-up and copying of worker processes, and a small input
costs no more than its work.

Ctrl-C (or a set `cancel` event) stops scheduling; tasks already running
finish and are recorded, so a rerun continues from there.
"""

from __future__ import annotations

import gc
import itertools
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future

from biounet.pipeline import stages
from biounet.pipeline.errors import task_failure
from biounet.pipeline.graph import Graph, Task
from biounet.plan.blocks import Block
from biounet.runtime.process import release_free_memory

TRIM_EVERY = 16  # tasks between two returns of freed memory to the kernel (`release_free_memory`)
# Most urgent first: keep the network fed, free memory, then the rest. "predict": a block without
# tissue, whose task is only its image copy (the network threads take the others).
PRIORITY = {"read": 0, "write": 1, "predict": 1, "pass1": 1, "merge": 2, "pyramid": 3, "pass2": 4, "table": 5,
            "metadata": 6}


class PriorityPool:
    """Threads taking work from one queue, lowest priority number first."""

    def __init__(self, threads: int, name: str, nice: int = 0) -> None:
        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._seq = itertools.count()
        self._nice = nice
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(threads)]
        for t in self._threads:
            t.start()

    def submit(self, priority: float, fn: Callable, *args) -> Future:
        fut: Future = Future()
        self._queue.put((priority, next(self._seq), fut, fn, args))
        return fut

    def _work(self) -> None:
        if self._nice:
            try:  # Linux: a thread is a schedulable task with its own nice value
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self._nice)
            except (OSError, AttributeError):
                pass
        while True:
            _, _, fut, fn, args = self._queue.get()
            if fut is None:
                return
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn(*args))
            except BaseException as err:  # noqa: BLE001 - handed to whoever waits
                fut.set_exception(err)

    def shutdown(self) -> None:
        for _ in self._threads:
            self._queue.put((float("inf"), next(self._seq), None, None, None))
        for t in self._threads:
            t.join()


def execute(res: stages.Resources, graph: Graph, task: Task) -> None:
    """Run one task (predict as a whole) in this process."""
    blocks = res.run.blocks
    if task.stage == "predict":
        stages.predict(res, blocks[task.index])
    elif task.stage == "pass1":
        stages.pass1(res, blocks[task.index])
    elif task.stage == "merge":
        stages.merge_step(res)
    elif task.stage == "pass2":
        stages.pass2(res, blocks[task.index])
    elif task.stage == "pyramid":
        stages.pyramid(res, graph.pyramids[task.index])
    elif task.stage == "table":
        stages.table_step(res)
    elif task.stage == "metadata":
        stages.metadata_step(res)
    else:
        raise ValueError(f"unknown stage {task.stage!r}")


def network_threads(devices: list, workers: int) -> list:
    """The device of each network thread: `workers` on the CPU; on GPUs at least two per
    GPU, so one block crosses to or from a GPU (and is read and written) while the
    other runs (`--workers` more)."""
    import torch

    from biounet.plan.gpu import assign_devices

    if devices[0].type == "cpu":
        return devices[:1] * max(1, workers)
    return [torch.device(name) for name in assign_devices([str(d) for d in devices], max(2, workers))]


def _load_kernels() -> None:
    from biounet.label.kernels import warm_up

    warm_up()


class CpuClock:
    """CPU seconds of this process's threads, summed per step (read, net, write, pass1, ...)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._lock = threading.Lock()

    def timed(self, step: str, fn: Callable, *args):
        start = time.thread_time()
        try:
            return fn(*args)
        finally:
            took = time.thread_time() - start
            with self._lock:
                self.seconds[step] = self.seconds.get(step, 0.0) + took


def _written(res: stages.Resources, clock: CpuClock, block: Block, output, pixels, started: float) -> float:
    clock.timed("write", stages.write_prediction, res, block, output, pixels)
    return time.perf_counter() - started


class LocalRunner:
    """Runs the tasks `todo` of `graph` (their other dependencies are done) in this process."""

    def __init__(self, res: stages.Resources, graph: Graph, todo: Iterable[Task], threads: int, workers: int = 1,
                 on_done: Callable[[Task, float | None], None] | None = None, cancel: threading.Event | None = None,
                 prefetch: int = 2) -> None:
        self.res, self.graph = res, graph
        self.todo = set(todo)
        self.threads, self.workers, self.prefetch = max(1, threads), max(1, workers), prefetch
        self.on_done, self.cancel = on_done, cancel or threading.Event()
        self.waiting = {t: sum(1 for d in graph.deps[t] if d in self.todo) for t in self.todo}
        self.dependents: dict[Task, list[Task]] = {}
        for t in self.todo:
            for d in graph.deps[t]:
                if d in self.todo:
                    self.dependents.setdefault(d, []).append(t)
        self.lock = threading.Lock()
        self.finished_tasks = 0
        self.clock = CpuClock()
        layout = res.run.layout
        per_row = -(-layout.shape[-1] // layout.block)
        self.cached = 2 * per_row + 2 * max(self.workers, 2) + 8  # class maps held for pass 1, at most
        self.stop = threading.Event()
        self.finished = threading.Event()
        self.left = len(self.todo)
        self.running = 0
        self.failure: list[BaseException] = []

    # -- bookkeeping ------------------------------------------------------------------
    def _stopped(self) -> bool:
        return bool(self.failure) or self.stop.is_set() or self.cancel.is_set()

    def _fail(self, task: Task, err: BaseException) -> None:
        with self.lock:
            if not self.failure:
                blocks = self.res.run.blocks
                index = self.graph.block_of(task)
                block = blocks[index] if index is not None and task.stage != "pyramid" else None
                self.failure.append(err if isinstance(err, KeyboardInterrupt) else task_failure(task, block, err))

    def _done(self, task: Task, seconds: float) -> None:
        ready = []
        with self.lock:
            self.left -= 1
            self.finished_tasks += 1
            trim = self.finished_tasks % TRIM_EVERY == 0
            for t in self.dependents.get(task, ()):
                self.waiting[t] -= 1
                if self.waiting[t] == 0:
                    ready.append(t)
        if trim:
            release_free_memory()
        if self.on_done is not None:
            self.on_done(task, seconds)
        for t in ready:
            self._schedule(t)
        self._check_end()

    def _check_end(self) -> None:
        with self.lock:
            if self.left == 0 or (self._stopped() and self.running == 0):
                self.finished.set()

    def _networked(self, task: Task) -> bool:
        return task.stage == "predict" and not self.res.skipped(task.index)

    def _schedule(self, task: Task) -> None:
        if self._networked(task):
            return  # the network threads take them in order
        with self.lock:
            if self._stopped():
                return
            self.running += 1
        fut = self.pool.submit(PRIORITY[task.stage], self._execute, task)
        fut.add_done_callback(lambda f, task=task: self._settle(task, f))

    def _execute(self, task: Task) -> float | bool:
        """Run a queued task unless the run stopped meanwhile; its seconds (False: not run)."""
        if self._stopped():
            return False
        start = time.perf_counter()
        self.clock.timed(task.stage, execute, self.res, self.graph, task)
        return time.perf_counter() - start

    def _settle(self, task: Task, fut: Future) -> None:
        err = fut.exception()
        with self.lock:
            self.running -= 1
        if err is not None:
            self._fail(task, err)
            self._check_end()
        elif fut.result() is False:
            self._check_end()
        else:
            self._done(task, fut.result())

    # -- the network ------------------------------------------------------------------
    def _network(self, mine: list[Task], reads: dict[Task, Future], writes: threading.Semaphore, device) -> None:
        if device.type == "cuda":  # each network thread queues its GPU work on a stream of its own
            import torch

            with torch.cuda.device(device), torch.cuda.stream(torch.cuda.Stream(device)):
                return self._predict_blocks(mine, reads, writes, device)
        return self._predict_blocks(mine, reads, writes, device)

    def _predict_blocks(self, mine: list[Task], reads: dict[Task, Future], writes: threading.Semaphore,
                        device) -> None:
        blocks = self.res.run.blocks
        for n, task in enumerate(mine):
            if self._stopped():
                return
            for ahead in mine[n : n + self.prefetch + 1]:
                if ahead not in reads:
                    reads[ahead] = self.pool.submit(PRIORITY["read"], self.clock.timed, "read", stages.read_input,
                                                    self.res, blocks[ahead.index])
            block = blocks[task.index]
            self._wait_for_room()
            with self.lock:
                self.running += 1
            try:
                window, pixels = reads.pop(task).result()
                started = time.perf_counter()
                output = self.clock.timed("net", stages.predict_classes, self.res, block, window, device)
            except BaseException as err:  # noqa: BLE001 - reported with the block named
                with self.lock:
                    self.running -= 1
                self._fail(task, err)
                self._check_end()
                return
            writes.acquire()
            fut = self.pool.submit(PRIORITY["write"], _written, self.res, self.clock, block, output, pixels, started)

            def written(f: Future, task: Task = task) -> None:
                writes.release()
                self._settle(task, f)

            fut.add_done_callback(written)

    def _wait_for_room(self) -> None:
        """Hold prediction while too many class maps wait for their pass 1 (which needs the
        next row of blocks): memory stays a few rows of blocks, whatever the slide."""
        res = self.res
        with res.room:
            while len(res.classes) >= self.cached and not self._stopped():
                res.room.wait(0.1)

    def run(self) -> None:
        """Run every task; raise the first failure (a TaskError) or KeyboardInterrupt."""
        if not self.todo:
            return
        # Everything alive now (modules, the network) stays: the cyclic collector then only
        # scans what the run allocates. Without this, its full collections walk millions of
        # objects of torch, numba and zarr several times a run, holding the GIL (8192^2 with
        # the null network: 12.5 s against 8.4 s).
        gc.freeze()
        # A network on the CPU gets the cores first: CPU-side tasks fill the gaps it leaves,
        # instead of stalling its OpenMP threads at every barrier.
        nice = 10 if stages.network_on_cpu(self.res) else 0
        self.pool = PriorityPool(self.threads, "biounet-cpu", nice)
        # The labelling loops (numba: about a second to import and load in a process) load
        # while the first blocks are predicted, not in front of them.
        threading.Thread(target=_load_kernels, name="biounet-kernels", daemon=True).start()
        predicts = sorted(t for t in self.todo if self._networked(t))
        reads: dict[Task, Future] = {}
        devices = network_threads(self.res.devices, self.workers)
        writes = threading.Semaphore(2 * len(devices) + 1)  # predicted blocks waiting to be written
        nets = [threading.Thread(target=self._network, args=(predicts[w :: len(devices)], reads, writes, device),
                                 name=f"biounet-net-{w}", daemon=True) for w, device in enumerate(devices)]
        try:
            for t in sorted(self.todo):
                if not self._networked(t) and self.waiting[t] == 0:
                    self._schedule(t)
            for t in nets:
                t.start()
            while not self.finished.wait(0.1):  # a timeout, so Ctrl-C reaches this thread
                if self.cancel.is_set():
                    self._check_end()
        except KeyboardInterrupt as err:
            self._fail(Task("predict"), err)
        finally:
            self.stop.set()  # network threads stop after their current block
            for t in nets:
                if t.is_alive():
                    t.join()
            for fut in reads.values():
                fut.cancel()
            while True:  # tasks already running finish and are recorded
                with self.lock:
                    if self.running == 0:
                        break
                self.finished.wait(0.05)
            self.pool.shutdown()
            gc.unfreeze()
        if self.failure:
            raise self.failure[0]
