"""``recipe.yaml``: the fully resolved recipe of a run, written beside its report, that re-runs it.

It holds the steps (each ``{type, version, data}`` with every field resolved), the targets, the
accuracy budget and the seed; the task it ran on is recorded but ``slimkit run --task`` names the
task to run it on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from slimkit.core.files import atomic_write_text, read_mapping
from slimkit.errors import UsageError, shown
from slimkit.pipeline.checks import check_seed
from slimkit.pipeline.recipe import Recipe

FORMAT = "slimkit-recipe/1"
_KNOWN = {"format", "steps", "targets", "target", "max_drop", "seed", "task", "command"}
# What a command records beside its recipe for the reader (the distill command's student, the
# threads of the run); read back as the recipe's extra, not used to re-run it.
_RECORDED = {"threads", "student", "label_fraction", "alone", "precision", "source"}


@dataclass(frozen=True)
class RunRecipe:
    """What ``slimkit run`` reads: steps applied once, then deployed and measured on each target.

    Example:
        >>> r = RunRecipe.from_dict({"steps": [{"type": "fuse", "data": {}}], "targets": ["onnxruntime"]})
        >>> r.recipe.describe(), r.targets
        ('fuse@torch', ('onnxruntime',))
    """

    recipe: Recipe
    targets: tuple[str, ...] = ("torch",)
    max_drop: float | None = None
    seed: int = 0
    task: str | None = None
    command: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> RunRecipe:
        if not isinstance(raw, Mapping):
            raise UsageError(f"a recipe must be a mapping with 'steps' and 'targets', not {shown(raw)}",
                             hint="e.g. steps: [{type: quantize, data: {scheme: int8-static}}]; targets: [openvino]")
        fmt = raw.get("format", FORMAT)
        if fmt != FORMAT:
            raise UsageError(f"recipe format {shown(fmt)} is not one this slimkit reads ({FORMAT})",
                             hint="write the recipe again with this slimkit version")
        targets = raw.get("targets", [raw.get("target", "torch")])
        if isinstance(targets, str):
            targets = [targets]
        if not isinstance(targets, list) or not targets or not all(isinstance(t, str) for t in targets):
            raise UsageError(f"recipe 'targets' must be a list of target names, got {shown(targets)}",
                             hint="e.g. targets: [onnxruntime, openvino]")
        max_drop = raw.get("max_drop")
        if max_drop is not None and (isinstance(max_drop, bool) or not isinstance(max_drop, (int, float))):
            raise UsageError(f"recipe 'max_drop' must be a number, got {shown(max_drop)}")
        seed = raw.get("seed", 0)
        check_seed(seed, "recipe 'seed'")
        for key in ("task", "command"):
            if raw.get(key) is not None and not isinstance(raw[key], str):
                raise UsageError(f"recipe '{key}' must be a name, got {shown(raw[key])}")
        unknown = sorted(map(str, set(raw) - _KNOWN - _RECORDED))
        if unknown:
            raise UsageError(f"recipe: unknown key(s) {', '.join(map(str, unknown))}",
                             hint=f"a recipe has {', '.join(sorted(_KNOWN))}")
        recipe = Recipe.from_dict({"steps": raw.get("steps", []), "target": "torch"})
        return cls(recipe, tuple(dict.fromkeys(targets)), max_drop, seed, raw.get("task"), raw.get("command"),
                   {k: v for k, v in raw.items() if k in _RECORDED})

    @classmethod
    def load(cls, path: str | Path) -> RunRecipe:
        """Read a recipe file (YAML or JSON, safe loaders only); a search's ``best/`` folder or a run
        folder is read through the ``recipe.yaml`` inside it."""
        path = Path(path)
        if path.is_dir():
            path = path / "recipe.yaml"
        return cls.from_dict(read_mapping(path, "recipe"))


def write_run_recipe(path: Path, *, command: str, task: str, steps: list[dict[str, Any]], targets: list[str],
                     max_drop: float | None, seed: int, threads: int | None = None,
                     extra: Mapping[str, Any] | None = None) -> None:
    """Write the resolved recipe of a run, atomically, with a comment saying how to re-run it."""
    doc: dict[str, Any] = {"format": FORMAT, "command": command, "task": task, "steps": steps,
                           "targets": list(targets), "max_drop": max_drop, "seed": seed}
    if threads is not None:
        doc["threads"] = threads
    doc.update(extra or {})
    source = (extra or {}).get("source")
    if command == "distill":
        again = "`slimkit distill` with the student and options recorded here (its student is not a recipe step)"
    elif source:  # a user's model: `slimkit run` reads the recorded --model/--data options
        again = f"`slimkit run {path.name} --out DIR` (the --model and --data options recorded under source)"
    else:
        again = f"`slimkit run {path.name} --task {task} --out DIR`"
    header = f"# slimkit recipe written by `slimkit {command}`; re-run it with\n#   {again}\n"
    atomic_write_text(path, header + yaml.safe_dump(doc, sort_keys=False, default_flow_style=None))
