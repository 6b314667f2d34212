"""The never-slower references: the unmodified model on each target of the space.

Without one, a quantized model slower than float on its own target was named best.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from slimkit.core.files import atomic_write_json
from slimkit.core.task import Task
from slimkit.errors import SlimkitError
from slimkit.pipeline import fresh_dir
from slimkit.pipeline.recipe import Recipe
from slimkit.search._trial import evaluate_recipe
from slimkit.search.space import SearchSpace


def _identity_params(space: SearchSpace, target: str) -> dict[str, Any] | None:
    """Parameters of the unmodified model on ``target`` (the never-slower reference), if in the space.

    Found from what the choices build, not from known "off" values, so a plug-in technique's
    dimensions count too: each dimension keeps its first choice unless another one leaves fewer
    steps in the recipe (an "off" value on a tie); the point is the unmodified model when no step
    is left.
    """
    dims = {name: values for name, values in space.dimensions().items() if name != "target"}
    params: dict[str, Any] = {"target": target, **{name: values[0] for name, values in dims.items()}}
    for _ in range(2):  # a second pass: a choice can matter only once another is set (distill after prune)
        for name, values in dims.items():
            # Among choices that leave as few steps, an "off" value (False, 0, "none") names the point best.
            params[name] = min(values, key=lambda v: (len(space.recipe({**params, name: v}).steps),
                                                      bool(v) and v != "none"))
    return params if not space.recipe(params).steps else None


def _measure_references(task: Task, space: SearchSpace, out: Path, threads: int, quick: bool,
                        say: Callable[[str], None], measured: set[str] | None = None) -> None:
    """The unmodified model on each target where no trial measured it. Called at the start for targets
    whose unmodified model the space cannot draw (e.g. int8 only), and again after the trials for
    targets whose identity point the budget did not reach (``measured``: targets that have one).
    Kept in ``references.json``; the report lists them beside the trials."""
    path = out / "references.json"
    refs = json.loads(path.read_text()) if path.exists() else []
    have = {r["target"] for r in refs if "failed" not in r} | (measured or set())
    for target in space.targets:
        if target == "torch" or target in have or (measured is None and _identity_params(space, target) is not None):
            continue  # torch eager is the baseline; an identity point in the space may still be drawn
        say(f"measuring the unmodified model on {target} (the never-slower reference; no trial measured it)")
        refs = [r for r in refs if r["target"] != target]
        try:
            entry = evaluate_recipe(task, Recipe((), target), fresh_dir(out / "references" / target), threads,
                                    entry_id=f"ref:float@{target}", quick=quick, out=out)
        except SlimkitError as err:
            # The trials measured are still reported; the target is listed as skipped with the reason.
            say(f"the reference on {target} failed: {err.message}")
            refs.append({"target": target, "failed": str(err)})
            continue
        entry.recipe = [*entry.recipe, {"type": "target", "version": 1, "data": {"name": target}}]
        entry.notes.append("the unmodified model on this target, measured as the never-slower reference "
                           "(no trial of the search measured it)")
        refs.append(entry.to_dict())
    atomic_write_json(path, refs)


def _identity_measured(study: Any) -> set[str]:
    """Targets whose unmodified model a finished trial measured (its recipe is the target step alone)."""
    found = set()
    for t in study.trials:
        entry = t.user_attrs.get("entry") if t.state.name == "COMPLETE" else None
        if entry and len(entry.get("recipe", [])) == 1:
            found.add(entry["target"])
    return found
