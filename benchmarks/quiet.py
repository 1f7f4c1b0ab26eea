"""Was the machine quiet while a benchmark ran? Figures that claim a target must come from a quiet
machine: other work competing for the same cores hides the pipeline's own CPU cost.

The CPU time of everything else is the machine's busy time (/proc/stat, all processes, also
short-lived ones) minus this process's and its waited-for children's (os.times): measured over
the section, it says how many cores other work used on average. The load average before and
after is shown beside it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

QUIET_CORES = 0.1
"""Other work may use at most this many cores on average (its own noise: a few daemons)."""


@dataclass(frozen=True)
class Snapshot:
    wall: float
    busy: float  # CPU seconds of the whole machine (all cores, all processes)
    ours: float  # CPU seconds of this process and its finished children
    load: float  # 1-minute load average


def machine_busy_seconds(stat: str | None = None) -> float:
    """CPU seconds the machine has been busy since boot: the first line of /proc/stat
    (user, nice, system, irq, softirq, steal; idle and iowait left out)."""
    text = stat if stat is not None else Path("/proc/stat").read_text()
    fields = [int(v) for v in text.splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def snapshot() -> Snapshot:
    t = os.times()
    return Snapshot(time.monotonic(), machine_busy_seconds(), t.user + t.system + t.children_user + t.children_system,
                    os.getloadavg()[0])


@dataclass(frozen=True)
class Quietness:
    """What other work did between two snapshots."""

    seconds: float
    other_cpu: float
    load_before: float
    load_after: float

    @property
    def other_cores(self) -> float:
        return self.other_cpu / self.seconds if self.seconds > 0 else 0.0

    @property
    def quiet(self) -> bool:
        return self.other_cores <= QUIET_CORES

    def describe(self) -> str:
        verdict = "quiet" if self.quiet else f"**busy** (more than {QUIET_CORES} cores): figures not claimed"
        return (f"other work used {self.other_cores:.2f} cores on average ({self.other_cpu:.0f} CPU s over "
                f"{self.seconds:.0f} s), load average {self.load_before:.2f} before and {self.load_after:.2f} "
                f"after: {verdict}")


def between(before: Snapshot, after: Snapshot) -> Quietness:
    """Other work's CPU time over the interval: the machine's busy time less this process tree's.

    Children still running at `after` are not yet in os.times(): the benchmark waits for its
    child processes, so none is running at a section's end."""
    other = max(0.0, (after.busy - before.busy) - (after.ours - before.ours))
    return Quietness(after.wall - before.wall, other, before.load, after.load)
