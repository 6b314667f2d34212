"""Worker processes: whether a trial's process still runs, and a worker that ends with its search."""

from __future__ import annotations

import os
import threading
import time


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
