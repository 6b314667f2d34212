"""slimkit: make deep-learning models smaller, faster and cheaper, with measurements.

Example:
    >>> import slimkit
    >>> task = slimkit.load_task("digits-cnn")
    >>> task.metric.name
    'accuracy'
"""

import importlib
from typing import TYPE_CHECKING, Any

# OpenMP's wait policy is left as it is: passive waiting steadies torch eager beside a busy process
# (p90 14 ms instead of 73-93 ms) but makes it 2.2x slower on an idle machine (9.7 ms instead of 4.3 ms
# for digits-resnet18 on 2 threads: BENCHMARKS.md, session 16), which would inflate every speed-up
# over the baseline. Paired timing and the busy-machine warnings answer the noise instead; the policy
# in force is recorded in each report's environment.

# The public API, imported on first use: `slimkit --help`, `list` and `env` start without loading
# torch and every backend.
_LAZY = {
    "measure": ("slimkit.measure", None), "report": ("slimkit.report", None),
    "benchmark": ("slimkit.api.benchmark", "benchmark"), "distill": ("slimkit.api.distill", "distill"),
    "prune": ("slimkit.api.prune", "prune"), "quantize": ("slimkit.api.quantize", "quantize"),
    "run": ("slimkit.api.run", "run"), "fit_task": ("slimkit.api.train", "fit_task"),
    "tune": ("slimkit.api.tune", "tune"), "Batches": ("slimkit.core.data", "Batches"),
    "Metric": ("slimkit.core.task", "Metric"), "Task": ("slimkit.core.task", "Task"),
    "accuracy": ("slimkit.core.task", "accuracy"), "as_inputs": ("slimkit.core.task", "as_inputs"),
    "SlimkitError": ("slimkit.errors", "SlimkitError"), "Recipe": ("slimkit.pipeline", "Recipe"),
    "RunRecipe": ("slimkit.pipeline", "RunRecipe"), "load": ("slimkit.pipeline.load", "load"),
    "Result": ("slimkit.pipeline.result", "Result"), "SearchSpace": ("slimkit.search", "SearchSpace"),
    "optimize": ("slimkit.search", "optimize"), "get_target": ("slimkit.targets", "get_target"),
    "list_tasks": ("slimkit.tasks", "list_tasks"), "load_task": ("slimkit.tasks", "load_task"),
}


_SUBPACKAGES = ("api", "cli", "core", "errors", "export", "kernels", "pipeline", "plugins", "search", "targets",
                "tasks", "techniques", "train", "ui")


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:  # `slimkit.targets.get_target(...)` after a bare `import slimkit`
        return importlib.import_module(f"slimkit.{name}")
    if name not in _LAZY:
        raise AttributeError(f"module 'slimkit' has no attribute '{name}'")
    module, attr = _LAZY[name]
    value = importlib.import_module(module) if attr is None else getattr(importlib.import_module(module), attr)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, *_SUBPACKAGES})


if TYPE_CHECKING:
    from slimkit import measure, report
    from slimkit.api.benchmark import benchmark
    from slimkit.api.distill import distill
    from slimkit.api.prune import prune
    from slimkit.api.quantize import quantize
    from slimkit.api.run import run
    from slimkit.api.train import fit_task
    from slimkit.api.tune import tune
    from slimkit.core.data import Batches
    from slimkit.core.task import Metric, Task, accuracy, as_inputs
    from slimkit.errors import SlimkitError
    from slimkit.pipeline import Recipe, RunRecipe
    from slimkit.pipeline.load import load
    from slimkit.pipeline.result import Result
    from slimkit.search import SearchSpace, optimize
    from slimkit.targets import get_target
    from slimkit.tasks import list_tasks, load_task

__version__ = "0.1.0"

__all__ = [
    "Batches",
    "Metric",
    "Recipe",
    "Result",
    "RunRecipe",
    "SearchSpace",
    "SlimkitError",
    "Task",
    "__version__",
    "accuracy",
    "as_inputs",
    "benchmark",
    "distill",
    "fit_task",
    "get_target",
    "list_tasks",
    "load",
    "load_task",
    "measure",
    "prune",
    "optimize",
    "quantize",
    "report",
    "run",
    "tune",
]
