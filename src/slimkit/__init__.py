"""slimkit: make deep-learning models smaller, faster and cheaper, with measurements.

Example:
    >>> import slimkit
    >>> task = slimkit.load_task("digits-cnn")
    >>> task.metric.name
    'accuracy'
"""

from slimkit import measure, report
from slimkit.api.benchmark import benchmark
from slimkit.core.data import Batches
from slimkit.core.task import Metric, Task, accuracy, as_inputs
from slimkit.errors import SlimkitError
from slimkit.targets import get_target
from slimkit.tasks import list_tasks, load_task

__version__ = "0.1.0"

__all__ = [
    "Batches",
    "Metric",
    "SlimkitError",
    "Task",
    "__version__",
    "accuracy",
    "as_inputs",
    "benchmark",
    "get_target",
    "list_tasks",
    "load_task",
    "measure",
    "report",
]
