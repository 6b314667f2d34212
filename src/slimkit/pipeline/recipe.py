"""A recipe: ordered technique steps, then a target. YAML/JSON at the edges, dataclasses inside.

Each step is applied by its registered technique (``slimkit.plugins``): the state of the model so
far goes in (a torch model, and once a step deploys, the loaded artifact on the target), the new
state comes out. Steps that change the torch model (fuse, prune, distill) run first; a step that
produces a target artifact (quantize) sets ``state.deployed``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slimkit.core.config import StepConfig
from slimkit.core.technique import StepState
from slimkit.errors import UsageError, shown
from slimkit.plugins import config_from_dict, technique


@dataclass(frozen=True)
class Recipe:
    """Technique steps in order, then the target that runs the result.

    Example:
        >>> from slimkit.techniques.fuse import FuseConfig
        >>> r = Recipe((FuseConfig(),), "onnxruntime")
        >>> Recipe.from_dict(r.to_dict()) == r
        True
        >>> r.describe()
        'fuse@onnxruntime'
    """

    steps: tuple[StepConfig, ...] = ()
    target: str = "torch"

    def __post_init__(self) -> None:
        deploying = [s.TYPE for s in self.steps if not technique(s.TYPE).changes_model]
        if len(deploying) > 1:
            raise UsageError(f"a recipe deploys once; it has {len(deploying)} deploying steps ({', '.join(deploying)})",
                             hint="keep one quantize step (its config says the scheme and options)")
        deployed: str | None = None
        for step in self.steps:
            if not technique(step.TYPE).changes_model:
                deployed = step.TYPE
            elif deployed:
                # The deployed artifact is what gets measured: a later change of the torch model
                # would be listed in the recipe and silently not be in the model.
                raise UsageError(f"recipe step '{step.TYPE}' comes after '{deployed}', which deploys the model",
                                 hint=f"put the steps that change the model first, '{deployed}' last")

    def to_dict(self) -> dict[str, Any]:
        return {"steps": [s.to_dict() for s in self.steps], "target": self.target}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Recipe:
        if not isinstance(raw, Mapping):
            raise UsageError(f"a recipe must be a mapping with 'steps' and 'target', not {shown(raw)}",
                             hint="e.g. {steps: [{type: fuse, data: {}}], target: onnxruntime}")
        steps = raw.get("steps", [])
        if not isinstance(steps, Sequence) or isinstance(steps, (str, bytes)):
            raise UsageError(f"recipe 'steps' must be a list of {{type, version, data}}, not {shown(steps)}",
                             hint="e.g. steps: [{type: prune, data: {ratio: 0.3}}]")
        target = raw.get("target", "torch")
        if not isinstance(target, str):
            raise UsageError(f"recipe 'target' must be a target name, got {shown(target)}")
        return cls(tuple(config_from_dict(s) for s in steps), target)

    @classmethod
    def load(cls, path: str | Path) -> Recipe:
        """Read a recipe from YAML or JSON (safe loaders only)."""
        from slimkit.core.files import read_mapping

        return cls.from_dict(read_mapping(path, "recipe"))

    def describe(self) -> str:
        names = [s.TYPE for s in self.steps] or ["float"]
        return "+".join(names) + f"@{self.target}"

    def split(self) -> tuple[Recipe, Recipe]:
        """The leading steps that only change the torch model (a search may reuse their result
        across trials), and the rest."""
        n = 0
        while n < len(self.steps) and technique(self.steps[n].TYPE).changes_model:
            n += 1
        return Recipe(self.steps[:n], self.target), Recipe(self.steps[n:], self.target)


def check_steps_on(recipe: Recipe, targets: Sequence[str]) -> None:
    """Refuse, before any work, a deploying step that some target cannot run (a scheme not offered
    there, an option only another runtime has)."""
    for step in recipe.steps:
        tech = technique(step.TYPE)
        if tech.for_target is not None:
            for target in targets:
                tech.for_target(step, target)


def apply_steps(state: StepState, recipe: Recipe) -> StepState:
    """Apply every step by its technique; returns the final state (``deployed`` set when a step deployed)."""
    for step in recipe.steps:
        state = technique(step.TYPE).apply(state, step)
    return state
