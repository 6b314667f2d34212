from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path

from slimkit.core.registry import Registry
from slimkit.core.task import Task
from slimkit.errors import TaskError, UsageError

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


def _load_user_task(spec: str, seed: int) -> Task:
    path_text, func_name = spec.rsplit(":", 1)
    path = Path(path_text)
    if not path.is_file():
        raise UsageError(f"task file not found: {path}", hint="give an existing path/to/file.py:function")
    module_name = f"slimkit_user_task_{abs(hash(path.resolve()))}"
    loader_spec = importlib.util.spec_from_file_location(module_name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise UsageError(f"cannot import {path}", hint="give a Python source file")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[module_name] = module
    try:
        loader_spec.loader.exec_module(module)
    except Exception as exc:
        raise TaskError(f"importing {path} failed: {exc.__class__.__name__}: {exc}",
                        hint="fix the error in the task file") from exc
    func = getattr(module, func_name, None)
    if not callable(func):
        raise UsageError(f"{path} has no function '{func_name}'",
                         hint=f"define def {func_name}() -> slimkit.Task in {path}")
    try:
        task = func(seed=seed) if "seed" in func.__code__.co_varnames else func()
    except Exception as exc:
        raise TaskError(f"{spec} raised {exc.__class__.__name__}: {exc}", hint="fix the task function") from exc
    if not isinstance(task, Task):
        raise TaskError(f"{spec} returned {type(task).__name__}, not a slimkit.Task",
                        hint="return slimkit.Task(...) from the function")
    return task
