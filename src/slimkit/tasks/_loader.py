from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable
from pathlib import Path

from slimkit.core.registry import Registry
from slimkit.core.task import Task
from slimkit.errors import SlimkitError, TaskError, UsageError

TASKS: Registry[Callable[..., Task]] = Registry("task")


def _digits_cnn(seed: int = 0) -> Task:
    """Small CNN on scikit-learn's 8x8 handwritten digits (trains in seconds)."""
    from slimkit.tasks.digits import digits_cnn

    return digits_cnn(seed)


def _digits_resnet18(seed: int = 0) -> Task:
    """torchvision ResNet-18 on the digits upsampled to 3x64x64 (baseline >= 97%)."""
    from slimkit.tasks.digits import digits_resnet18

    return digits_resnet18(seed)


def _digits_mobilenet(seed: int = 0) -> Task:
    """torchvision MobileNetV2 on the digits upsampled to 3x32x32 (depthwise-separable, SGD-trained)."""
    from slimkit.tasks.digits import digits_mobilenet

    return digits_mobilenet(seed)


def _minilm(seed: int = 0) -> Task:
    """Pretrained all-MiniLM-L6-v2 sentence encoder; cosine to the original model."""
    # Imported on use: transformers is an optional extra and slow to import.
    from slimkit.tasks.minilm import minilm

    return minilm(seed)


TASKS.register("digits-cnn", _digits_cnn)
TASKS.register("digits-resnet18", _digits_resnet18)
TASKS.register("digits-mobilenet", _digits_mobilenet)
TASKS.register("minilm", _minilm)


def list_tasks() -> list[tuple[str, str]]:
    """Names and one-line descriptions of the built-in tasks.

    Example:
        >>> "digits-cnn" in dict(list_tasks())
        True
    """
    return [(name, (fn.__doc__ or "").strip().splitlines()[0]) for name, fn in TASKS]


def load_task(spec: str | Task, seed: int = 0) -> Task:
    """A built-in task by name, or a user task from ``path/to/file.py:function``.

    The user function takes no arguments (or ``seed``) and returns a :class:`Task`.
    Loading a user file runs its code: only pass files you trust.

    Example:
        >>> load_task("digits-cnn").name
        'digits-cnn'
    """
    if isinstance(spec, Task):
        return spec
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if not isinstance(spec, str):
        raise UsageError(f"a task is a name, path/to/file.py:function or a slimkit.Task, got {spec!r}",
                         hint="see `slimkit list` for the built-in tasks")
    if ":" in spec and spec.split(":")[0].endswith(".py"):
        return _load_user_task(spec, seed)
    if spec.endswith(".py"):
        raise UsageError(f"task file given without a function: '{spec}'",
                         hint="write it as path/to/file.py:function_name")
    return TASKS.get(spec)(seed=seed)


def task_key(task: str) -> str:
    """A task as run folders record it: a built-in name as given, a task file by absolute path (so a
    worker, or a --resume from another folder, finds the same file).

    Example:
        >>> task_key("digits-cnn")
        'digits-cnn'
    """
    head, sep, func = task.rpartition(":")
    if sep and head.endswith(".py") and Path(head).is_file():
        return f"{Path(head).resolve()}:{func}"
    return task


def call_user_function(spec: str, what: str, seed: int | None = None) -> object:
    """Import ``path/to/file.py`` and call its ``function`` (with ``seed=`` where it takes one);
    a missing file or function, an import error or an exception in the function is one clear error.

    The file's folder is importable while it loads, as when the file is run as a script (a task
    file importing a helper module beside it failed).
    """
    path_text, func_name = spec.rsplit(":", 1)
    path = Path(path_text)
    if not path.is_file():
        raise UsageError(f"{what} file not found: {path}", hint="give an existing path/to/file.py:function")
    if not func_name.isidentifier():
        raise UsageError(f"'{func_name}' in {spec} is not a function name", hint="write it as path/to/file.py:function")
    module_name = f"slimkit_user_{what}_{abs(hash(path.resolve()))}"
    loader_spec = importlib.util.spec_from_file_location(module_name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise UsageError(f"cannot import {path}", hint="give a Python source file")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[module_name] = module
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    try:
        loader_spec.loader.exec_module(module)
    except Exception as exc:
        raise TaskError(f"importing {path} failed: {exc.__class__.__name__}: {exc}",
                        hint=f"fix the error in the {what} file") from exc
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)
    func = getattr(module, func_name, None)
    if func is None:
        raise UsageError(f"{path} has no function '{func_name}'", hint=f"define def {func_name}() in {path}")
    if not callable(func):
        raise UsageError(f"{path}: '{func_name}' is a {type(func).__name__}, not a function",
                         hint=f"define def {func_name}() in {path}")
    try:
        takes_seed = seed is not None and "seed" in inspect.signature(func).parameters
    except (TypeError, ValueError):
        takes_seed = False
    try:
        return func(seed=seed) if takes_seed else func()
    except SlimkitError:
        raise  # already says what is wrong and what to do (wrapping it printed two hints)
    except Exception as exc:
        raise TaskError(f"{spec} raised {exc.__class__.__name__}: {exc}", hint=f"fix the {what} function") from exc


def _load_user_task(spec: str, seed: int) -> Task:
    task = call_user_function(spec, "task", seed)
    if not isinstance(task, Task):
        raise TaskError(f"{spec} returned {type(task).__name__}, not a slimkit.Task",
                        hint="return slimkit.Task(...) from the function")
    return task
