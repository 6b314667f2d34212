"""The settings of one search, as stored in its run folder (``search.json``) and read by every worker.

Workers in other processes and a later ``--resume`` rebuild the search from this file alone, so its
keys are a format: :meth:`SearchSettings.to_dict` writes the keys earlier versions wrote, and
:meth:`SearchSettings.from_dict` reads what they wrote.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from slimkit.errors import UsageError
from slimkit.search.space import SearchSpace
from slimkit.tasks._loader import task_key

# Keys a stored file may leave out, and the value that stands for "left out": a search stored before
# the report was titled with the task's name has no task_name; no search writes ladder (on by default).
_OPTIONAL: dict[str, Any] = {"task_name": None, "ladder": True, "objective": "latency"}


@dataclass(frozen=True)
class SearchSettings:
    """Everything a worker needs to run trials of one search.

    A field missing from a stored mapping takes its default here (older files, and partial settings
    built by tests, leave keys out).
    """

    task: str = ""  # the task key: a built-in name, or a task file by absolute path
    task_name: str | None = None
    seed: int = 0
    threads: int = 1
    quick: bool = False
    space: dict[str, Any] = field(default_factory=dict)  # SearchSpace.to_dict()
    sampler: str = "tpe"
    pruner: str = "none"
    workers: int = 1
    trials: int | None = None
    max_drop: float = 0.0
    metric_floor: float = 0.0
    latency_budget: float | None = None
    size_budget: int | None = None  # bytes
    storage: str = ""  # an Optuna RDB storage URL
    out: str = ""
    time_budget: float | None = None  # minutes
    deadline: float | None = None  # time.time() at which the workers stop starting trials
    ladder: bool = True  # climb the accuracy-recovery ladder for candidates below the floor
    # What the best is chosen for (pipeline.select.OBJECTIVES); the trials are drawn for metric and latency.
    objective: str = "latency"

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> SearchSettings:
        """Settings from their stored form; keys this version does not know are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        """The stored form (``search.json``): the keys earlier versions wrote, in the same order."""
        data = asdict(self)
        return {k: v for k, v in data.items() if k not in _OPTIONAL or v != _OPTIONAL[k]}

    @property
    def title(self) -> str:
        """The task's name, for the report (the task key where the file stored none)."""
        return self.task_name or self.task

    @property
    def single_objective(self) -> bool:
        """Pruners need a single objective; without one the study is (metric, latency)."""
        return self.pruner != "none"

    def search_space(self) -> SearchSpace:
        return SearchSpace.from_dict(self.space)


def as_settings(settings: SearchSettings | Mapping[str, Any]) -> SearchSettings:
    """``settings`` as :class:`SearchSettings`; a mapping is read as the stored form."""
    return settings if isinstance(settings, SearchSettings) else SearchSettings.from_dict(settings)


def _settings_path(out: Path) -> Path:
    return out / "search.json"


def _check_resume_matches(settings: SearchSettings | Mapping[str, Any], **given: Any) -> None:
    """--resume continues the stored search as it was defined; a different task, budget, target list or
    space given with it is an error, not silently ignored (the finished trials were judged by the old ones)."""
    settings = as_settings(settings)
    stored_space = settings.search_space()
    stored = {"task": settings.task, "max_drop": settings.max_drop, "latency_budget": settings.latency_budget,
              "size_budget": settings.size_budget, "targets": list(stored_space.targets), "space": stored_space,
              "sampler": settings.sampler, "pruner": settings.pruner}
    changed = []
    stored["task"] = task_key(settings.task)  # a search stored before task files were made absolute
    for name, value in given.items():
        if value is None:
            continue
        if name == "targets":
            value = list(value)
        if value != stored[name]:
            changed.append(f"{name} {value!r} (stored: {stored[name]!r})" if name != "space" else "space")
    if changed:
        raise UsageError(f"--resume continues the search stored in {settings.out} with its own settings; "
                         f"these differ: {'; '.join(changed)}",
                         hint="resume with the stored settings (leave the others out), or start a new search "
                              "in another --out")
