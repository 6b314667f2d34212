"""Evaluate one recipe: apply its steps, deploy on its target, measure."""

from __future__ import annotations

from pathlib import Path

from slimkit.api._common import measure_entry, measure_model
from slimkit.core.recipe import Recipe, RecipeState, run_recipe
from slimkit.core.task import Task
from slimkit.report.schema import Entry


def evaluate_recipe(task: Task, recipe: Recipe, workdir: Path, threads: int, *, entry_id: str,
                    quick: bool = False, out: Path | None = None, metric_floor: float | None = None) -> Entry:
    """Run ``recipe`` on a fresh copy of the task's model and measure it on the recipe's target.

    ``metric_floor`` lets recovery steps stop once the metric is back within budget.
    """
    state = RecipeState(task, task.build_model(), recipe.target, workdir, threads)
    if metric_floor is not None:
        state.info["metric_floor"] = metric_floor
    state = run_recipe(state, recipe)
    steps = recipe.to_dict()["steps"]
    if state.deployed is None:
        entry = measure_model(state.model, task, recipe.target, workdir, threads, entry_id=entry_id,
                              recipe=steps, quick=quick, out=out)
    else:
        entry = measure_entry(state.deployed, task, state.model, entry_id=entry_id, recipe=steps,
                              quick=quick, out=out)
    steps_info = {k: v for k, v in state.info.items() if k != "metric_floor"}
    if steps_info:
        entry.measurement.details["steps"] = steps_info
    return entry
