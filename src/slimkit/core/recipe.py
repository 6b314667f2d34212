"""A recipe: ordered technique steps, then a target. YAML/JSON at the edges, dataclasses inside.

Each technique registers a *step runner* for its config type. A runner takes the state of
the model so far (a torch model, and once a step deploys, a loaded artifact on the target)
and returns the new state. Steps that change the torch model (fuse, prune, distill) run
first; a step that produces a target artifact (quantize) sets ``state.deployed``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from slimkit.core.config import StepConfig, config_from_dict
from slimkit.core.task import Task
from slimkit.errors import UsageError


@dataclass
class RecipeState:
    """What a step runner reads and returns."""

    task: Task
    model: nn.Module
    target: str
    workdir: Path
    threads: int
    teacher: nn.Module | None = None  # the unmodified model, for distillation-based recovery
    deployed: Any = None  # a slimkit.targets.Deployed once a step produced the target artifact
    info: dict[str, Any] = field(default_factory=dict)  # per-step facts for the report
    progress: Callable[[str], None] | None = None  # where long steps (pruning recovery) report
    # Called after each pruning-recovery epoch with (epoch, validation metric, MACs left as a
    # fraction); may raise to stop the recipe (the search's early-stopping pruner).
    on_validation: Callable[[int, float, float], None] | None = None


StepRunner = Callable[[RecipeState, StepConfig], RecipeState]
_RUNNERS: dict[str, StepRunner] = {}


def register_step(config_type: str, runner: StepRunner) -> None:
    """Register how a recipe step of ``config_type`` is applied."""
    _RUNNERS[config_type] = runner


@dataclass(frozen=True)
class Recipe:
    """Technique steps in order, then the target that runs the result.

    Example:
        >>> from slimkit.techniques.fuse import FuseConfig
        >>> r = Recipe((FuseConfig(),), "onnxruntime")
        >>> Recipe.from_dict(r.to_dict()) == r
        True
    """

    steps: tuple[StepConfig, ...] = ()
    target: str = "torch"

    def to_dict(self) -> dict[str, Any]:
        return {"steps": [s.to_dict() for s in self.steps], "target": self.target}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Recipe:
        if not isinstance(raw, Mapping):
            raise UsageError("a recipe must be a mapping with 'steps' and 'target'")
        steps = raw.get("steps", [])
        if not isinstance(steps, Sequence) or isinstance(steps, (str, bytes)):
            raise UsageError("recipe 'steps' must be a list of {type, version, data}")
        return cls(tuple(config_from_dict(s) for s in steps), str(raw.get("target", "torch")))

    @classmethod
    def load(cls, path: str | Path) -> Recipe:
        """Read a recipe from YAML or JSON (safe loaders only)."""
        from slimkit.core.files import read_mapping

        return cls.from_dict(read_mapping(path, "recipe"))

    def describe(self) -> str:
        names = [s.TYPE for s in self.steps] or ["float"]
        return "+".join(names) + f"@{self.target}"


def run_recipe(state: RecipeState, recipe: Recipe) -> RecipeState:
    """Apply every step; returns the final state (``deployed`` set when a step deployed)."""
    for step in recipe.steps:
        runner = _RUNNERS.get(step.TYPE)
        if runner is None:
            raise UsageError(f"no runner for recipe step '{step.TYPE}'",
                             hint=f"steps that can run: {', '.join(sorted(_RUNNERS))}")
        state = runner(state, step)
    return state
