"""One process per run folder: two runs on the same --out overwrote each other's baseline and report.

A command holds an exclusive ``flock`` on ``<out>/.slimkit-lock`` from claiming the folder until it
returns; the kernel releases it when the process dies, however it dies (SIGKILL included), so a
stale lock never blocks a ``--resume``. A search's worker processes never claim the folder: they
work under the lock of the command that started them.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from slimkit.errors import FolderInUseError

LOCK_NAME = ".slimkit-lock"
_HELD: dict[Path, int] = {}  # folder -> open descriptor holding its lock (this process)


def lock_run(out: Path) -> None:
    """Hold ``out``'s lock for this process (again: a no-op), or refuse: another process runs there.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> lock_run(folder); lock_run(folder); held(folder)
        True
        >>> release_all(); held(folder)
        False
    """
    try:
        import fcntl
    except ImportError:  # no flock (Windows): runs are not guarded against each other there
        return
    key = out.resolve()
    if key in _HELD:
        return
    fd = os.open(out / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise FolderInUseError(f"{out} is in use: a slimkit run ({holder}) is working there now",
                               hint="wait for it to finish, or choose another --out") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode())
    _HELD[key] = fd


def held(out: Path) -> bool:
    """Whether this process holds ``out``'s lock."""
    return out.resolve() in _HELD


def release(out: Path) -> None:
    """Release ``out``'s lock if this process holds it."""
    fd = _HELD.pop(out.resolve(), None)
    if fd is not None:
        os.close(fd)


def release_all(keep: frozenset[Path] = frozenset()) -> None:
    """Release the locks this process holds, except those of ``keep`` (held before a nested command)."""
    for key in [k for k in _HELD if k not in keep]:
        os.close(_HELD.pop(key))


def holding() -> frozenset[Path]:
    """The folders whose lock this process holds now."""
    return frozenset(_HELD)
