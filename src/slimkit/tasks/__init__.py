"""Built-in tasks and loading of user tasks (``path/to/file.py:function``)."""

from slimkit.tasks._loader import TASKS, list_tasks, load_task

__all__ = ["TASKS", "list_tasks", "load_task"]
