"""Peak resident memory of this process while a block runs, sampled from /proc."""

from __future__ import annotations

import os
import resource
import threading
from types import TracebackType


def rss_bytes() -> int:
    """Current resident set size; falls back to the lifetime peak where /proc is missing."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakMemory:
    """Context manager: ``.peak_increase`` is the highest RSS seen minus the RSS at entry.

    Sampling runs in a thread, so keep it out of latency timing.

    Example:
        >>> with PeakMemory() as pm:
        ...     block = bytearray(50_000_000)
        >>> pm.peak_increase > 0
        True
    """

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.start = 0
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self) -> PeakMemory:
        self.start = self.peak = rss_bytes()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def peak_increase(self) -> int:
        return max(0, self.peak - self.start)
