"""How a run stops early: a task that failed (`TaskError`) or a cancel (`Interrupted`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from biounet.pipeline.graph import Task
    from biounet.plan.blocks import Block


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or a cancel) during a run; the message says what was kept and how to resume."""


class TaskError(RuntimeError):
    """A task that failed, with the task (and its block) named."""

    def __init__(self, message: str, task: Task, block: Block | None) -> None:
        super().__init__(message)
        self.task, self.block = task, block


def task_failure(task: Task, block: Block | None, err: BaseException) -> TaskError:
    """A TaskError naming the task, its block and the cause (the message of biounet's own
    errors, type and message of others)."""
    from biounet.predict.tiles import DeviceMemoryError
    from biounet.read.image import ImageReadError

    cause = str(err) if isinstance(err, (ImageReadError, DeviceMemoryError)) else f"{type(err).__name__}: {err}"
    cause = cause.strip().splitlines()[0] if cause.strip() else type(err).__name__
    if block is not None and task.stage == "predict":
        where = f"block {block.index} ({block.describe()})"
    elif block is not None:
        where = f"{task.stage} of block {block.index} ({block.describe()})"
    else:
        where = f"{task}"
    failure = TaskError(f"{where} failed: {cause}", task, block)
    failure.__cause__ = err
    return failure
