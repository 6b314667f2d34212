"""slimkit: make deep-learning models smaller, faster and cheaper, with measurements.

Example:
    >>> import slimkit
    >>> task = slimkit.load_task("digits-cnn")
    >>> task.metric.name
    'accuracy'
"""

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
