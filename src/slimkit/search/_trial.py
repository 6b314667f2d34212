"""Evaluate one recipe: apply its steps, deploy on its target, measure."""

from __future__ import annotations

import copy
import json
import weakref
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from slimkit.core.task import Task
from slimkit.core.technique import StepState
from slimkit.measure.measure import batch1_latency
from slimkit.pipeline import Recipe, apply_steps, measure_entry, measure_model
from slimkit.pipeline.skeleton import note_steps
from slimkit.report.schema import Entry
from slimkit.targets import get_target

# Steps that only change the torch model (Technique.changes_model): trials that share them (pruned
# float vs pruned + int8, or the ladder's rungs after one pruning) reuse the result instead of
# pruning and recovering again: for MiniLM that recovery is the most expensive part of a trial.
_CACHE_SIZE = 4
# key -> (the task the result belongs to, model, step info); the task is held weakly and checked on
# a hit, so two tasks of the same name (another seed, another user file) never share a result.
_prefix_cache: OrderedDict[str, tuple[weakref.ref, nn.Module, dict[str, Any]]] = OrderedDict()


def _model_steps(state: StepState, prefix: Recipe, key: str) -> StepState:
    """Run the model-changing steps, or take their result from this process's cache."""
    if not prefix.steps:
        return state
    hit = _prefix_cache.get(key)
    if hit is not None and hit[0]() is state.task:
        _prefix_cache.move_to_end(key)
        state.model = copy.deepcopy(hit[1])
        state.info.update(copy.deepcopy(hit[2]))
        state.info["reused_model_steps"] = True
        return state
    state = apply_steps(state, prefix)
    _prefix_cache[key] = (weakref.ref(state.task), copy.deepcopy(state.model), copy.deepcopy(state.info))
    while len(_prefix_cache) > _CACHE_SIZE:
        _prefix_cache.popitem(last=False)
    return state


def _run(task: Task, recipe: Recipe, workdir: Path, threads: int, metric_floor: float | None,
         progress: Callable[[str], None] | None,
         on_validation: Callable[[int, float, float], None] | None = None) -> StepState:
    state = StepState(task, task.build_model(), recipe.target, workdir, threads, progress=progress,
                      on_validation=on_validation)
    if metric_floor is not None:
        state.info["metric_floor"] = metric_floor
    prefix, rest = recipe.split()
    key = json.dumps([task.name, id(task), metric_floor, prefix.to_dict()["steps"]], sort_keys=True, default=str)
    state = _model_steps(state, prefix, key)
    return apply_steps(state, rest)


def time_recipe(task: Task, recipe: Recipe, workdir: Path, threads: int, *, quick: bool = False,
                metric_floor: float | None = None) -> float:
    """Batch-1 median latency (ms) of ``recipe`` on its target, the evaluation set left unscored.

    The model-changing steps come from the same cache as :func:`evaluate_recipe`'s, so timing a
    candidate's float twin after the candidate costs a deployment and the timing only.
    """
    state = _run(task, recipe, workdir, threads, metric_floor, None)
    deployed = state.deployed
    if deployed is None:
        deployed = get_target(recipe.target).deploy(state.model, task.example_inputs, workdir, threads)
    return batch1_latency(deployed, task, quick=quick).median


def evaluate_recipe(task: Task, recipe: Recipe, workdir: Path, threads: int, *, entry_id: str,
                    quick: bool = False, out: Path | None = None, metric_floor: float | None = None,
                    progress: Callable[[str], None] | None = None,
                    on_validation: Callable[[int, float, float], None] | None = None) -> Entry:
    """Run ``recipe`` on a fresh copy of the task's model and measure it on the recipe's target.

    ``metric_floor`` lets recovery steps stop once the metric is back within budget;
    ``progress`` receives the long steps' progress lines (e.g. pruning recovery epochs);
    ``on_validation`` each recovery epoch's score (see ``StepState.on_validation``).
    """
    state = _run(task, recipe, workdir, threads, metric_floor, progress, on_validation)
    steps = recipe.to_dict()["steps"]
    if state.deployed is None:
        entry = measure_model(state.model, task, recipe.target, workdir, threads, entry_id=entry_id,
                              recipe=steps, quick=quick, out=out)
    else:
        entry = measure_entry(state.deployed, task, state.model, entry_id=entry_id, recipe=steps,
                              quick=quick, out=out)
    note_steps(entry, state.info)
    return entry
