"""How busy other processes kept this process's CPUs while something was timed.

Latency measured on a shared machine is only as good as the machine was quiet. Interleaving
makes slow drifts hit every model alike, but concurrent load does not slow every runtime alike:
on a 2-core host with a test suite running, torch eager with 2 OpenMP threads slowed ~5x (its
threads wait for each other on busy cores) while ONNX Runtime slowed far less, so any ratio
taken then is wrong in both directions. Reports therefore say when timings were taken on a busy
machine instead of presenting them as clean.

The measure is read from Linux's ``/proc/stat`` for the CPUs this process may run on: their
busy time (steal included: a hypervisor running other guests is contention too) minus this
process's own CPU time, in cores. Elsewhere it is None (unknown), never a guess.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import TracebackType

BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # user nice system irq softirq steal (idle and iowait are not busy)
NOTICEABLE = 0.3  # cores of other work that make a timing suspect


def _busy_seconds() -> float | None:
    try:
        allowed = os.sched_getaffinity(0)
        lines = Path("/proc/stat").read_text().splitlines()
        hz = os.sysconf("SC_CLK_TCK")
    except (OSError, AttributeError, ValueError):
        return None
    total = 0
    for line in lines:
        name, _, rest = line.partition(" ")
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in allowed:
            values = rest.split()
            total += sum(int(values[i]) for i in BUSY_FIELDS if i < len(values))
    return total / hz


class OtherLoad:
    """Context manager: ``cores`` is the CPU time other processes used on this process's CPUs during
    the block, per second of wall time (0.0 on an idle machine, 1.0 = one core kept busy), or None
    where the system does not tell.

    Example:
        >>> with OtherLoad() as load:
        ...     _ = sum(range(100_000))
        >>> load.cores is None or load.cores >= 0.0
        True
    """

    cores: float | None = None

    def __enter__(self) -> OtherLoad:
        self._start = (time.monotonic(), time.process_time(), _busy_seconds())
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        wall0, own0, busy0 = self._start
        busy1 = _busy_seconds()
        wall = time.monotonic() - wall0
        if busy0 is None or busy1 is None or wall <= 0:
            return
        own = time.process_time() - own0
        self.cores = round(max(0.0, (busy1 - busy0) - own) / wall, 2)
