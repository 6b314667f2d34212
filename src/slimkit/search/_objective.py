"""One trial of the search: the objective Optuna calls, with the accuracy-recovery ladder.

Every trial's full report entry is kept in the study itself (trial user attributes), so the report
is rebuilt from storage alone.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from slimkit._optional import require
from slimkit.core.task import Task
from slimkit.errors import SlimkitError, first_line, resource_error
from slimkit.pipeline import fresh_dir, meets_floor
from slimkit.pipeline.recipe import Recipe
from slimkit.report.schema import Entry
from slimkit.search._offers import _not_offered
from slimkit.search._process import _alive
from slimkit.search._settings import SearchSettings, as_settings
from slimkit.search._storage import _counts, _native_constraints, _over_budget, _set_constraints
from slimkit.search._trial import evaluate_recipe, time_recipe
from slimkit.tasks import load_task

# Task objects handed to optimize() in this process, by name: trials load tasks by name, and a
# user's Task object (not a built-in, not a file) can be found only here.
_IN_PROCESS: dict[str, Task] = {}


def _load(name: str, seed: int) -> Task:
    return _IN_PROCESS.get(name) or load_task(name, seed=seed)


def _objective_factory(settings: SearchSettings, say: Callable[[str], None]) -> Callable[[Any], Any]:
    optuna = require("optuna")
    task = _load(settings.task, settings.seed)
    space = settings.search_space()
    floor = settings.metric_floor
    single = settings.single_objective

    def objective(trial: Any) -> Any:
        if _over_budget(trial, settings.trials):
            # Two workers can both pass the trial-count check at the budget's last trial.
            trial.set_user_attr("over_budget", True)
            trial.study.stop()
            raise optuna.TrialPruned("the trial budget is spent")
        params = space.suggest(trial)
        recipe = space.recipe(params)
        trial.set_user_attr("pid", os.getpid())
        trial.set_user_attr("host", socket.gethostname())  # with the pid: is its process still alive?
        twin = _finished_twin(trial, params)
        if twin is not None:
            # Samplers re-propose points in small categorical spaces; measuring again costs minutes.
            trial.set_user_attr("duplicate_of", twin.number)
            trial.set_user_attr("recipe", twin.user_attrs["recipe"])
            _set_constraints(trial, twin.user_attrs["constraints"])
            return twin.values[0] if single else tuple(twin.values)
        trial.set_user_attr("recipe", recipe.to_dict())
        why_not = _not_offered(recipe)
        if why_not:
            # A point this host cannot run: answered at once, listed as skipped, spending no --trials.
            trial.set_user_attr("skipped", True)
            trial.set_user_attr("error", f"not run: {why_not}")
            if _native_constraints():
                trial.set_constraint("metric", 1.0)
            raise optuna.TrialPruned(why_not)
        try:
            entry = _measure_trial(task, recipe, trial, settings, say)
        except KeyboardInterrupt:
            # Ctrl-C or SIGTERM (turned into the same by the search): Optuna stores the trial as
            # failed; this mark has --resume run its point again, spending no budget.
            trial.set_user_attr("interrupted", True)
            trial.set_user_attr("error", "interrupted: stopped by a signal before it finished")
            raise
        m = entry.measurement
        entry.recipe = [*entry.recipe, {"type": "target", "version": 1, "data": {"name": recipe.target}}]
        _set_constraints(trial, _violations(entry, settings))
        trial.set_user_attr("entry", entry.to_dict())
        say(f"trial {trial.number}: {m.metric_name} {m.metric:.4g}, {m.latency.median:.3f} ms")
        if single:
            # One objective for pruners: latency, with a steep penalty for missing the metric floor.
            return m.latency.median * (1.0 + 10.0 * max(0.0, floor - m.metric))
        return m.metric, m.latency.median

    return objective


def _measure_trial(task: Task, recipe: Recipe, trial: Any, settings: SearchSettings,
                   say: Callable[[str], None]) -> Entry:
    """The trial's entry: its recipe measured, then the ladder climbed where it missed the floor; a
    trial that fails is pruned (and counts as violating every constraint)."""
    optuna = require("optuna")
    out = Path(settings.out)
    floor = settings.metric_floor
    workdir = fresh_dir(out / "trials" / f"{trial.number:04d}")
    say(f"trial {trial.number}{_progress(trial, settings)}: {recipe.describe()}")
    try:
        entry = evaluate_recipe(task, recipe, workdir, settings.threads,
                                entry_id=f"t{trial.number}:{recipe.describe()}",
                                quick=settings.quick, out=out, metric_floor=floor,
                                progress=_trial_say(say, trial.number),
                                on_validation=_early_stop(trial, floor, say) if settings.single_objective else None)
        if not meets_floor(entry.measurement.metric, floor) and settings.ladder:
            entry = _climb(task, recipe, entry, workdir, settings, trial, say)
    except optuna.TrialPruned:
        raise
    except Exception as exc:  # a SlimkitError, or a library's failure inside a technique
        # The report lists the real error of every failed trial (Optuna alone stored only "fail").
        err = exc if isinstance(exc, SlimkitError) else resource_error(exc) or SlimkitError(
            f"{type(exc).__name__}: {first_line(exc)}")
        trial.set_user_attr("error", str(err))
        if _native_constraints():
            trial.set_constraint("metric", 1.0)  # a failed trial counts as violating
        say(f"trial {trial.number} failed: {err.message}")
        raise optuna.TrialPruned(str(err)) from exc
    return entry


def _progress(trial: Any, settings: SearchSettings) -> str:
    """Where the search stands, for the trial's first line: " (4 of 20, ~6 min left)", with the time
    left from the trials finished so far (or the time budget's deadline, whichever is sooner)."""
    trials = trial.study.get_trials(deepcopy=False)
    done = [t for t in trials if _counts(t) and t.datetime_start and t.datetime_complete]
    parts = [f"{len(done) + 1} of {settings.trials}" if settings.trials else f"{len(done) + 1}"]
    left: float | None = None
    if settings.trials and done:
        per_trial = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in done) / len(done)
        left = per_trial * max(0, settings.trials - len(done)) / max(1, settings.workers)
    if settings.deadline:
        until = max(0.0, settings.deadline - time.time())
        left = until if left is None else min(left, until)
    if left is not None:
        parts.append(f"~{left / 60:.0f} min left" if left >= 90 else f"~{left:.0f} s left")
    return f" ({', '.join(parts)})"


def _violations(entry: Entry, settings: SearchSettings) -> list[float]:
    """The (metric, latency, size) constraint violations of a measured trial, <= 0 when met."""
    m = entry.measurement
    floor = settings.metric_floor
    violations = [min(0.0, floor - m.metric) if meets_floor(m.metric, floor) else floor - m.metric]
    violations.append(m.latency.median - settings.latency_budget if settings.latency_budget else -1.0)
    violations.append(m.size_bytes - settings.size_budget if settings.size_budget else -1.0)
    return violations


def _early_stop(trial: Any, floor: float, say: Callable[[str], None]) -> Callable[[int, float, float], None]:
    """The pruner's view of a trial during pruning recovery: after each epoch, the final objective's
    form (latency x (1 + 10 x shortfall below the floor)) with the MACs left standing in for the
    latency that is not measured yet. A trial worse than the pruner's rule at that epoch stops."""
    optuna = require("optuna")

    def report(epoch: int, metric: float, macs_left: float) -> None:
        trial.report(macs_left * (1.0 + 10.0 * max(0.0, floor - metric)), epoch)
        if trial.should_prune():
            why = f"stopped at recovery epoch {epoch}: validation {metric:.4g} lags the other trials'"
            trial.set_user_attr("stopped_early", why)
            say(f"trial {trial.number}: {why}")
            raise optuna.TrialPruned(why)

    return report


def _trial_say(say: Callable[[str], None], number: int) -> Callable[[str], None]:
    """Progress lines of one trial, prefixed with its number (the log interleaves workers)."""
    return lambda m: say(f"trial {number}: {m.strip()}")


def _climb(task: Any, recipe: Recipe, ptq: Entry, workdir: Path, settings: SearchSettings | Mapping[str, Any],
           trial: Any, say: Callable[[str], None]) -> Entry:
    """Run the accuracy-recovery ladder on a candidate that missed the floor; keep the rung that met it."""
    from slimkit.search.ladder import climb

    settings = as_settings(settings)
    entries = {"ptq": ptq}

    def evaluate(candidate: Recipe, name: str) -> float:
        if name == "ptq":
            return ptq.measurement.metric
        say(f"trial {trial.number}: recovery rung '{name}'")
        entries[name] = evaluate_recipe(task, candidate, fresh_dir(workdir / name), settings.threads,
                                        entry_id=f"t{trial.number}:{candidate.describe()}+{name}",
                                        quick=settings.quick, out=Path(settings.out),
                                        metric_floor=settings.metric_floor,
                                        progress=_trial_say(say, trial.number))
        return entries[name].measurement.metric

    why = _quantization_not_faster(task, recipe, ptq, workdir, settings)
    if why:
        # Every rung recovers accuracy for a quantized model; where quantization does not make
        # this model faster on this target (int8 on a CPU without VNNI can be slower than float),
        # no rung can give a candidate worth its minutes: the float twin dominates it.
        say(f"trial {trial.number}: recovery ladder skipped: {why}")
        ptq.measurement.details["ladder"] = [{"rung": "all", "skipped": why}]
        ptq.notes.append(f"below the floor, and no recovery tried: {why}, so the float recipe dominates it")
        return ptq
    float_metric = ptq.measurement.details.get("steps", {}).get("prune", {}).get("metric_after_recovery")
    _, chosen, history = climb(recipe, evaluate, settings.metric_floor, max_drop=settings.max_drop,
                               float_metric=float_metric, say=say)
    entry = entries[chosen]
    entry.measurement.details["ladder"] = history
    return entry


def _quantization_not_faster(task: Any, recipe: Recipe, ptq: Entry, workdir: Path,
                             settings: SearchSettings) -> str | None:
    """Why the ladder cannot pay off for this quantized candidate, or None where it can.

    The same recipe without its quantize step is measured on the same target, now (the host's
    speed drifts over a search, so a float trial timed an hour ago is no fair reference).
    """
    steps = tuple(s for s in recipe.steps if s.TYPE != "quantize")
    if len(steps) == len(recipe.steps):
        return None
    folder = fresh_dir(workdir / "float-reference")
    try:
        float_ms = time_recipe(task, Recipe(steps, recipe.target), folder, settings.threads,
                               quick=settings.quick, metric_floor=settings.metric_floor)
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # a reference, not a candidate: no artifact kept
    quant_ms = ptq.measurement.latency.median
    if quant_ms < float_ms:
        return None
    return (f"quantized {quant_ms:.3f} ms is no faster than the same model in float on {recipe.target} "
            f"({float_ms:.3f} ms)")


def _finished_twin(trial: Any, params: dict[str, Any], poll: float = 2.0) -> Any:
    """A finished trial of the same point, to answer from; an earlier trial of it still running in a
    live local worker (two --workers drawing one grid point) is waited for rather than measured twice."""
    host = socket.gethostname()
    while True:
        running = False
        for other in trial.study.get_trials(deepcopy=False):
            if other.number == trial.number or other.params != params:
                continue
            if other.state.name == "COMPLETE" and "entry" in other.user_attrs:
                return other
            pid = other.user_attrs.get("pid")
            if (other.state.name == "RUNNING" and other.number < trial.number and isinstance(pid, int)
                    and other.user_attrs.get("host") == host and _alive(pid)):
                running = True
        if not running:
            return None
        time.sleep(poll)
