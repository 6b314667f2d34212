"""Checks every command makes on its arguments before any work: threads, targets, budgets, names."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

from slimkit.errors import UsageError, shown
from slimkit.targets import get_target


def default_threads() -> int:
    """Cores this process may use (the one thread setting applied to every target)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def check_targets(names: Sequence[str]) -> list[tuple[str, str | None]]:
    """Each target name with None when available, else the reason it is not (unknown names raise)."""
    result = []
    for name in names:
        avail = get_target(name).availability()
        result.append((name, None if avail.ok else avail.reason))
    return result



def check_budgets(**budgets: float | None) -> None:
    """Budgets are numbers; a drop may be 0, every other budget must leave room for a model.

    Example:
        >>> check_budgets(max_drop=0.0, time_budget=None)
        >>> check_budgets(latency_budget=0.0)
        Traceback (most recent call last):
        slimkit.errors.UsageError: --latency-budget must be a number > 0, got 0.0
          hint: leave it out for no budget
    """
    for name, value in budgets.items():
        if value is None:
            continue
        flag = "--" + name.replace("_", "-")
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise UsageError(f"{flag} must be a number, got {value!r}")
        if not math.isfinite(value) or value < 0 or (value == 0 and name != "max_drop"):
            bound = ">= 0" if name == "max_drop" else "> 0"
            raise UsageError(f"{flag} must be a number {bound}, got {value}",
                             hint="leave it out for no budget" if name != "max_drop" else
                             "it is the metric points (or fraction) the model may lose")



def as_names(value: object, what: str) -> list[str]:
    """A list of names from a list/tuple of strings, or from one string (one name, never its letters).

    Example:
        >>> as_names("onnxruntime", "targets"), as_names(("torch", "openvino"), "targets")
        (['onnxruntime'], ['torch', 'openvino'])
    """
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise UsageError(f"{what} must be a list of names, got {value!r}", hint=f'e.g. {what}=["onnxruntime"]')


def target_names(value: object) -> list[str]:
    """The targets asked for, as :func:`as_names` reads them, each once (a repeated one gave two rows
    with one id and one artifact folder); none at all is a usage error.

    Example:
        >>> target_names(["openvino", "onnxruntime", "openvino"])
        ['openvino', 'onnxruntime']
    """
    names = list(dict.fromkeys(as_names(value, "targets")))
    if not names:
        raise UsageError("no targets given", hint="e.g. --targets onnxruntime,openvino, or targets=['onnxruntime'] "
                         "in Python (see `slimkit list`)")
    return names


def check_threads(threads: object) -> None:
    """None (all cores this process may use) or a whole number from 1 to the machine's CPU count:
    more threads than CPUs only oversubscribes every runtime (and loads the host for nothing)."""
    if threads is None:
        return
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise UsageError(f"threads must be a whole number >= 1, got {shown(threads)}")
    cpus = os.cpu_count() or 1
    if threads > cpus:
        raise UsageError(f"threads {threads} is more than this machine's {cpus} CPUs",
                         hint=f"use at most {cpus} (leave --threads out to use the cores this process may use)")


def check_seed(seed: object, what: str = "seed") -> None:
    """A whole number torch can seed with (0 <= seed < 2**63).

    Example:
        >>> check_seed(2**70)
        Traceback (most recent call last):
        slimkit.errors.UsageError: seed must be a whole number from 0 to 2**63-1, got 1180591620717411303424
          hint: e.g. --seed 0
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise UsageError(f"{what} must be a whole number from 0 to 2**63-1, got {shown(seed)}", hint="e.g. --seed 0")
