"""Errors a user can cause. Each carries what is wrong and what to do about it.

The CLI prints ``str(error)`` without a traceback and exits with ``error.exit_code``:
2 for usage errors (bad arguments, unknown names), 1 for failures while running.
"""

from __future__ import annotations

import reprlib

_SHOWN = reprlib.Repr()
_SHOWN.maxlevel, _SHOWN.maxstring, _SHOWN.maxother, _SHOWN.maxlist, _SHOWN.maxdict = 2, 60, 60, 4, 4


def shown(value: object) -> str:
    """A user's value quoted in a message: its repr, cut short (a YAML alias bomb's value expands to
    gigabytes when printed whole).

    Example:
        >>> shown("x" * 200)[:12], len(shown(list(range(1000))))
        ("'xxxxxxxxxxx", 17)
    """
    return _SHOWN.repr(value)


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message, cut at ``limit`` characters ("" when it has none):
    what a SlimkitError quotes of a library's failure.

    Example:
        >>> first_line(ValueError("bad shape\\n  at layer 3")), first_line(OSError())
        ('bad shape', '')
    """
    text = str(exc).strip()
    return (text.splitlines()[0] if text else "")[:limit]


class SlimkitError(Exception):
    """Base class: ``message`` says what is wrong, ``hint`` says what to do.

    Example:
        >>> err = SlimkitError("task 'x' not found", hint="run `slimkit list`")
        >>> print(err)
        task 'x' not found
          hint: run `slimkit list`
    """

    exit_code = 1

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class UsageError(SlimkitError):
    """Bad arguments or unknown names given by the user."""

    exit_code = 2


class FolderInUseError(UsageError):
    """Another slimkit process holds the run folder: nothing of it is touched (not even a cleanup)."""


class ResourceError(SlimkitError):
    """The machine ran out of something (memory, disk space): not the input's fault, and said so."""


def resource_error(exc: BaseException) -> ResourceError | None:
    """A ResourceError for an exception that means the machine ran out (disk full, out of memory).

    Example:
        >>> import errno
        >>> print(resource_error(OSError(errno.ENOSPC, "No space left on device")).message)
        no space left on the disk: [Errno 28] No space left on device
        >>> resource_error(ValueError("x")) is None
        True
    """
    import errno

    text = str(exc)
    if (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)) or "No space left" in text:
        return ResourceError(f"no space left on the disk: {first_line(exc, 200)}",
                             hint="free some disk space (or write --out to another disk) and run again")
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError" or "bad_alloc" in text:
        return ResourceError(f"out of memory: {first_line(exc, 200) or type(exc).__name__}",
                             hint="use a smaller batch size or model, or a machine with more memory")
    return None


class NonFiniteError(SlimkitError):
    """A metric or a loss came out NaN or infinite: the run or trial fails with this reason."""


class MissingDependencyError(SlimkitError):
    """An optional backend is not installed; the hint names the pip command."""

    exit_code = 2


class UnavailableError(SlimkitError):
    """A target or scheme cannot run on this machine (e.g. TensorRT without a GPU)."""


class ShapeError(SlimkitError):
    """Inputs do not have the shape the model expects."""

    exit_code = 2


class ExportError(SlimkitError):
    """Exporting a model to ONNX or OpenVINO failed."""


class ParityError(SlimkitError):
    """An exported or transformed model does not reproduce the torch model's outputs."""


class TaskError(SlimkitError):
    """A task could not be loaded or built."""


class TrainingError(SlimkitError):
    """Training could not go on (e.g. the loss became NaN or infinite)."""
