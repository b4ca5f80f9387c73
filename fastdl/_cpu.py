"""What the machine gives this process: the CPUs it may run on, a cgroup CPU quota, and
how much of its CPUs other processes keep busy (read from ``/proc/stat``).
``fastdl._threads`` decides the thread count from them."""
from __future__ import annotations

import os
import time


def allowed_cpus() -> list[int]:
    """The CPUs this process may run on (all, where affinity is unknown)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def cpu_quota(path: str = "/sys/fs/cgroup/cpu.max") -> float | None:
    """The cgroup v2 CPU quota in CPUs (at least 1), or None where there is none."""
    try:
        with open(path) as fh:
            quota, period = fh.read().split()[:2]
        return None if quota == "max" else max(int(quota) / int(period), 1.0)
    except (OSError, ValueError):
        return None


def default_threads() -> int:
    """The CPUs this process may use: its affinity, capped by its cgroup quota."""
    n = len(allowed_cpus())
    quota = cpu_quota()
    return max(1, min(n, int(quota)) if quota else n)


class CpuLoad:
    """The CPUs that other processes kept busy on ``cpus`` between two samples.

    Busy time is read from ``/proc/stat`` (user + nice + system + irq + softirq + steal
    of those CPUs: steal is the hypervisor giving the CPU to another machine), minus
    this process's own CPU time (``own``, all its threads), over the wall time between
    the samples.  ``sample()`` returns it, or None where ``/proc/stat`` is unreadable."""

    def __init__(self, cpus, path="/proc/stat", clock=time.monotonic, own=time.process_time):
        self.cpus = {f"cpu{c}".encode() for c in cpus}
        self.path, self.clock, self.own = path, clock, own
        self.hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.quota = None  # a cgroup CPU quota, when there is one (CPUs)
        # the per-CPU lines come first; the rest of the file (interrupts) is long
        self.size = 256 * ((os.cpu_count() or 1) + 2)
        self.last = self._read()

    def _busy(self):
        try:
            with open(self.path, "rb") as fh:
                data = fh.read(self.size)
        except OSError:
            return None
        busy = 0
        for line in data.split(b"\n")[1:]:
            if not line.startswith(b"cpu"):
                break
            name, *vals = line.split()
            if name in self.cpus:
                v = [int(x) for x in vals[:8]] + [0] * (8 - min(len(vals), 8))
                busy += sum(v) - v[3] - v[4]  # all but idle and iowait
        return busy / self.hz

    def _read(self):
        return self.clock(), self._busy(), self.own()

    def sample(self) -> float | None:
        now = self._read()
        (t0, b0, o0), (t1, b1, o1) = self.last, now
        self.last = now
        if b0 is None or b1 is None or t1 <= t0:
            return None
        return min(max((b1 - b0 - (o1 - o0)) / (t1 - t0), 0.0), float(len(self.cpus)))
