"""Worker processes: whether a trial's process still runs, and a worker that ends with its search."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process is only starting: the trial is a leftover of an earlier run
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _exit_with_parent() -> None:
    """A worker process ends when the search that started it is killed (else it would go on alone,
    and a later --resume would race it for the same trials)."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=watch, daemon=True).start()


@contextlib.contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """SIGTERM (a scheduler's stop, `kill`) raises KeyboardInterrupt, as Ctrl-C does: an interrupted
    trial is marked for --resume and the report of the finished trials is written, whichever signal."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread
        return

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
