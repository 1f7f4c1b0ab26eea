"""The task graph of a run: which block tasks there are and what each waits for.

The same graph runs in one process (`biounet.pipeline.local`), on Dask workers
(`biounet.pipeline.dask`) and split over job-array parts (`biounet.pipeline.parts`);
tasks finished by an earlier (killed) run are left out.

    predict(b)                    -
    pass1(b)                      predict of b and its 8 neighbours (their bands)
    merge                         pass1 of every block
    pass2(b)                      merge
    pyramid(array, 1, b)          predict (instances: pass2) of the level-0 blocks below b
    pyramid(array, k, b)          pyramid(array, k - 1) of the blocks below b
    table                         pass2 of every block
    metadata                      table and every pyramid block
"""

from __future__ import annotations

from dataclasses import dataclass

from biounet.pipeline.stages import PyramidTask, pyramid_tasks
from biounet.plan.run import Run
from biounet.write.store import INSTANCES

BLOCK_STAGES = ("predict", "pass1", "pass2")
STAGES = ("predict", "pass1", "merge", "pass2", "pyramid", "table", "metadata")
GLOBAL = ("merge", "table", "metadata")


@dataclass(frozen=True, order=True)
class Task:
    """One task: a stage and its block (or pyramid task, or 0 for a global step)."""

    stage: str
    index: int = 0

    @property
    def needs_gpu(self) -> bool:
        return self.stage == "predict"

    def __str__(self) -> str:
        return self.stage if self.stage in GLOBAL else f"{self.stage} {self.index}"


class Graph:
    """The tasks of a run and their dependencies."""

    def __init__(self, run: Run) -> None:
        self.run = run
        blocks = run.blocks
        self.pyramids: list[PyramidTask] = pyramid_tasks(run)
        grid = {(b.plane, b.y0 // run.layout.block, b.x0 // run.layout.block): b.index for b in blocks}
        deps: dict[Task, tuple[Task, ...]] = {}
        for b in blocks:
            deps[Task("predict", b.index)] = ()
        size = run.layout.block
        for b in blocks:
            row, col = b.y0 // size, b.x0 // size
            near = [grid[key] for key in ((b.plane, row + dy, col + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1))
                    if key in grid]
            deps[Task("pass1", b.index)] = tuple(Task("predict", i) for i in near)
        deps[Task("merge")] = tuple(Task("pass1", b.index) for b in blocks)
        for b in blocks:
            deps[Task("pass2", b.index)] = (Task("merge"),)
        first_of: dict[tuple[str, int], int] = {}  # (path, level) -> index of its first pyramid task
        for p in self.pyramids:
            first_of.setdefault((p.path, p.level), p.index)
        for p in self.pyramids:
            block = run.layout.blocks(p.level)[p.block]
            below = run.layout.children(p.level, block)
            if p.level == 1:
                stage = "pass2" if p.path == INSTANCES else "predict"
                deps[Task("pyramid", p.index)] = tuple(Task(stage, i) for i in below)
            else:
                start = first_of[(p.path, p.level - 1)]
                deps[Task("pyramid", p.index)] = tuple(Task("pyramid", start + i) for i in below)
        deps[Task("table")] = tuple(Task("pass2", b.index) for b in blocks)
        deps[Task("metadata")] = (Task("table"), *(Task("pyramid", p.index) for p in self.pyramids))
        self.deps = deps

    @property
    def tasks(self) -> list[Task]:
        return list(self.deps)

    def count(self, stage: str) -> int:
        return sum(1 for t in self.deps if t.stage == stage)

    def block_of(self, task: Task) -> int | None:
        """The level-0 block a task belongs to (pyramid tasks: the first level-0 block
        under them), None for global steps."""
        if task.stage in BLOCK_STAGES:
            return task.index
        if task.stage != "pyramid":
            return None
        p = self.pyramids[task.index]
        block = self.run.layout.blocks(p.level)[p.block]
        for level in range(p.level, 0, -1):
            block = self.run.layout.blocks(level - 1)[self.run.layout.children(level, block)[0]]
        return block.index
