"""Which tasks one call does: a whole run, or one job-array part's share.

- a run (no `part`), or `--finalize` alone: every task not yet done;
- `--part I/N`: prediction and label pass 1 of the I-th of N contiguous ranges of
  blocks (and the class, image and probability pyramids above them); pass 1 of a
  block on the range's border runs once the neighbouring part predicted its side,
  else it is left to the finishing step;
- `--finalize --part I/N`: the merge (done once, by whichever part comes first,
  with the pass-1 tasks the parts left), then pass 2 and the pyramids of its
  range; the last part to finish does what is left (border pyramid blocks, the
  object table, metadata), so no further job is needed.

Blocks are shards for NGFF 0.5, so the ranges never share a file.
"""

from __future__ import annotations

from biounet.pipeline.graph import Graph, Task
from biounet.pipeline.stages import STEPS
from biounet.write.runfolder import BusyError, Lease, RunFolder
from biounet.write.store import INSTANCES, OutputError

PREDICT_SIDE = ("predict", "pass1")


def share(count: int, part: tuple[int, int]) -> range:
    """The block indices of part (i, n): the i-th of n contiguous ranges."""
    i, n = part
    return range((i - 1) * count // n, i * count // n)


def busy(run, holder: dict) -> BusyError:
    return BusyError(f"output {run.output} is being written by another biounet run (pid {holder.get('pid')} on "
                     f"{holder.get('host')}: {holder.get('command', '?')}); job-array parts cannot join it")


def describe_counts(counts: dict[str, int], graph: Graph) -> str:
    """'predict 12/30, pass1 10/30, merge, ...' for the stages with any count."""
    out = []
    for stage in ("predict", "pass1", "merge", "pass2", "pyramid", "table", "metadata"):
        n = counts.get(stage, 0)
        if n:
            total = graph.count(stage)
            out.append(stage if total == 1 else f"{stage} {n}/{total}")
    return ", ".join(out)


class Selection:
    """The tasks of one call, handed out in rounds (`next_tasks`) until none is left."""

    def __init__(self, graph: Graph, folder: RunFolder, part: tuple[int, int] | None, finalize: bool) -> None:
        self.graph, self.folder, self.part, self.finalize = graph, folder, part, finalize
        self.start_done = self.done()
        self.rounds = 0
        self.held: Lease | None = None
        self.share: Lease | None = None  # held while a finalize part works on its share
        self.finished_share = False
        mine = share(graph.count("predict"), part) if part else None
        self.mine = mine
        if finalize and part is None:
            missing = graph.count("predict") - sum(1 for t in self.start_done if t.stage == "predict")
            if missing:
                raise OutputError(
                    f"{missing} of {graph.count('predict')} blocks of {graph.run.output} are not done yet: "
                    "run (or rerun) the missing parts first"
                )

    def done(self) -> set[Task]:
        """Tasks recorded done in the run folder."""
        out: set[Task] = set()
        for stage in ("predict", "pass1", "pass2", "pyramid"):
            out.update(Task(stage, i) for i in self.folder.done(stage))
        if self.folder.done("merge"):
            out.add(Task("merge"))
        steps = self.folder.done("steps")
        out.update(Task(name) for i, name in enumerate(STEPS) if i in steps)
        return out

    def kept_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t in self.start_done:
            counts[t.stage] = counts.get(t.stage, 0) + 1
        return counts

    def runnable(self, candidates: set[Task], done: set[Task]) -> set[Task]:
        """The candidates (not done) whose dependencies are done or runnable themselves."""
        chosen: set[Task] = set()
        for task in sorted(candidates - done, key=lambda t: (_STAGE_ORDER[t.stage], t.index)):
            if all(d in done or d in chosen for d in self.graph.deps[task]):
                chosen.add(task)
        return chosen

    def close(self) -> None:
        """Release every lock this call holds (also after a failure)."""
        self._release()
        self._leave_share()

    def _release(self) -> None:
        if self.held is not None:
            self.held.release()
            self.held = None

    def _in_share(self, task: Task) -> bool:
        block = self.graph.block_of(task)
        return block is not None and block in self.mine

    def next_tasks(self) -> set[Task]:
        """The next round of tasks (empty: this call is done)."""
        self._release()
        self.rounds += 1
        if (self.folder.read_record() or {}).get("status") == "complete":
            self._leave_share()
            return set()  # finished meanwhile (by another part): its run folder is gone
        done = self.done()
        everything = set(self.graph.deps)
        if self.part is None:
            return self.runnable(everything, done) if self.rounds == 1 else set()
        if not self.finalize:
            candidates = {t for t in everything if self._in_share(t) and
                          (t.stage in PREDICT_SIDE or (t.stage == "pyramid" and not self._instances(t)))}
            return self.runnable(candidates, done)
        label = f"finalize part {self.part[0]}/{self.part[1]}"
        if self.share is None and not self.finished_share:
            self.share = self.folder.acquire(label, name=f"share-{self.part[0]}")
        if Task("merge") not in done:
            self.held = self.folder.acquire(label, name="merging", wait=True)
            done = self.done()
            if Task("merge") not in done:
                return self.runnable({t for t in everything if t.stage in ("pass1", "merge")}, done)
            self._release()
        if not self.finished_share:
            candidates = {t for t in everything if self._in_share(t) and t.stage in ("pass2", "pyramid")}
            chosen = self.runnable(candidates, done)
            if chosen:
                return chosen
            self.finished_share = True
            self._leave_share()
        # The share is done. The part that finds every share done completes the output:
        # pyramid blocks across shares, the object table, metadata.
        self.held = self.folder.acquire(label, name="finishing", wait=True)
        if (self.folder.read_record() or {}).get("status") == "complete" or self.folder.live_holders("share-"):
            self._release()
            return set()
        done = self.done()
        if any(Task("pass2", b) not in done for b in range(self.graph.count("pass2"))):
            self._release()  # a part failed in its share: a rerun of it (or --finalize) completes the output
            return set()
        return self.runnable(everything - done, done)

    def _leave_share(self) -> None:
        if self.share is not None:
            self.share.release()
            self.share = None

    def _instances(self, task: Task) -> bool:
        return self.graph.pyramids[task.index].path == INSTANCES


_STAGE_ORDER = {s: i for i, s in enumerate(("predict", "pass1", "merge", "pass2", "pyramid", "table", "metadata"))}
