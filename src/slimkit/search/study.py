"""``slimkit optimize``: an Optuna study over recipes, measured on the targets.

The study lives in SQLite inside the run folder (or any Optuna RDB storage URL), so a
search killed at any point resumes with every finished trial, and several worker
processes — on one machine or many — share it. Every trial's full report entry is kept in
the study itself (trial user attributes), so the report is rebuilt from storage alone.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from slimkit._optional import require
from slimkit.api._common import (
    check_budgets,
    check_threads,
    claim_out,
    command_line,
    default_threads,
    finalize,
    fresh_dir,
    measure_model,
    meets_floor,
    pareto_ids,
    refusal_leaves_no_folder,
    target_names,
)
from slimkit.core.files import atomic_write_json
from slimkit.core.recipe import Recipe
from slimkit.core.task import Task
from slimkit.errors import SlimkitError, UsageError
from slimkit.measure.env import environment
from slimkit.measure.load import NOTICEABLE
from slimkit.report.schema import Entry, Report
from slimkit.search._trial import evaluate_recipe, time_recipe
from slimkit.search.space import SearchSpace
from slimkit.tasks import load_task
from slimkit.tasks._loader import task_key

SAMPLERS = ("grid", "random", "tpe", "gp", "nsga2")
PRUNERS = ("none", "median", "hyperband")
STUDY_NAME = "slimkit"
# Task objects handed to optimize() in this process, by name: trials load tasks by name, and a
# user's Task object (not a built-in, not a file) can be found only here.
_IN_PROCESS: dict[str, Task] = {}


def _load(name: str, seed: int) -> Task:
    return _IN_PROCESS.get(name) or load_task(name, seed=seed)


def _sampler(name: str, space: SearchSpace, seed: int, constrained: bool) -> Any:
    optuna = require("optuna", "the search")
    # Optuna >= 5 reads the constraints each trial sets (_set_constraints); a sampler given a
    # constraints function there only warns that the argument is deprecated.
    constraints = _constraints if constrained and not _native_constraints() else None
    if name == "grid":
        return optuna.samplers.GridSampler(space.dimensions(), seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constraints_func=constraints, n_startup_trials=4)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, constraints_func=constraints)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, constraints_func=constraints, population_size=8)
    raise UsageError(f"unknown sampler '{name}'", hint=f"choose one of: {', '.join(SAMPLERS)}")


def _pruner(name: str) -> Any:
    optuna = require("optuna", "the search")
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    if name == "none":
        return optuna.pruners.NopPruner()
    raise UsageError(f"unknown pruner '{name}'", hint=f"choose one of: {', '.join(PRUNERS)}")


def _constraints(trial: Any) -> list[float]:
    # <= 0 means satisfied (Optuna's convention); failed trials count as violating.
    return list(trial.user_attrs.get("constraints", [1.0]))


def _native_constraints() -> bool:
    """Whether this Optuna keeps constraints on the trial (``Trial.set_constraint``, Optuna >= 5)."""
    return hasattr(require("optuna", "the search").trial.Trial, "set_constraint")


def _set_constraints(trial: Any, violations: list[float]) -> None:
    """Record (metric, latency, size) violations, <= 0 when met, where every Optuna version finds them."""
    trial.set_user_attr("constraints", violations)
    if _native_constraints():
        for name, value in zip(("metric", "latency", "size"), violations, strict=False):
            trial.set_constraint(name, float(value))


def _settings_path(out: Path) -> Path:
    return out / "search.json"


def _objective_factory(settings: dict[str, Any], say: Callable[[str], None]) -> Callable[[Any], Any]:
    optuna = require("optuna")
    task = _load(settings["task"], settings["seed"])
    space = SearchSpace.from_dict(settings["space"])
    out = Path(settings["out"])
    floor = settings["metric_floor"]
    single = settings["pruner"] != "none"

    def objective(trial: Any) -> Any:
        if _over_budget(trial, settings["trials"]):
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
            trial.set_user_attr("error", f"not run: {why_not}")
            if _native_constraints():
                trial.set_constraint("metric", 1.0)
            raise optuna.TrialPruned(why_not)
        workdir = fresh_dir(out / "trials" / f"{trial.number:04d}")
        say(f"trial {trial.number}: {recipe.describe()}")
        try:
            entry = evaluate_recipe(task, recipe, workdir, settings["threads"],
                                    entry_id=f"t{trial.number}:{recipe.describe()}",
                                    quick=settings["quick"], out=out, metric_floor=floor,
                                    progress=_trial_say(say, trial.number),
                                    on_validation=_early_stop(trial, floor, say) if single else None)
            if not meets_floor(entry.measurement.metric, floor) and settings.get("ladder", True):
                entry = _climb(task, recipe, entry, workdir, settings, trial, say)
        except SlimkitError as err:
            trial.set_user_attr("error", str(err))
            if _native_constraints():
                trial.set_constraint("metric", 1.0)  # a failed trial counts as violating
            say(f"trial {trial.number} failed: {err.message}")
            raise optuna.TrialPruned(str(err)) from err
        m = entry.measurement
        entry.recipe = [*entry.recipe, {"type": "target", "version": 1, "data": {"name": recipe.target}}]
        violations = [min(0.0, floor - m.metric) if meets_floor(m.metric, floor) else floor - m.metric]
        violations.append(m.latency.median - settings["latency_budget"] if settings["latency_budget"] else -1.0)
        violations.append(m.size_bytes - settings["size_budget"] if settings["size_budget"] else -1.0)
        _set_constraints(trial, violations)
        trial.set_user_attr("entry", entry.to_dict())
        say(f"trial {trial.number}: {m.metric_name} {m.metric:.4g}, {m.latency.median:.3f} ms")
        if single:
            # One objective for pruners: latency, with a steep penalty for missing the metric floor.
            return m.latency.median * (1.0 + 10.0 * max(0.0, floor - m.metric))
        return m.metric, m.latency.median

    return objective


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


def _climb(task: Any, recipe: Recipe, ptq: Entry, workdir: Path, settings: dict[str, Any], trial: Any,
           say: Callable[[str], None]) -> Entry:
    """Run the accuracy-recovery ladder on a candidate that missed the floor; keep the rung that met it."""
    from slimkit.search.ladder import climb

    entries = {"ptq": ptq}

    def evaluate(candidate: Recipe, name: str) -> float:
        if name == "ptq":
            return ptq.measurement.metric
        say(f"trial {trial.number}: recovery rung '{name}'")
        entries[name] = evaluate_recipe(task, candidate, fresh_dir(workdir / name), settings["threads"],
                                        entry_id=f"t{trial.number}:{candidate.describe()}+{name}",
                                        quick=settings["quick"], out=Path(settings["out"]),
                                        metric_floor=settings["metric_floor"],
                                        progress=_trial_say(say, trial.number))
        return entries[name].measurement.metric

    why = _quantization_not_faster(task, recipe, ptq, workdir, settings, trial)
    if why:
        # Every rung recovers accuracy for a quantized model; where quantization does not make
        # this model faster on this target (int8 on a CPU without VNNI can be slower than float),
        # no rung can give a candidate worth its minutes: the float twin dominates it.
        say(f"trial {trial.number}: recovery ladder skipped: {why}")
        ptq.measurement.details["ladder"] = [{"rung": "all", "skipped": why}]
        ptq.notes.append(f"below the floor, and no recovery tried: {why}, so the float recipe dominates it")
        return ptq
    float_metric = ptq.measurement.details.get("steps", {}).get("prune", {}).get("metric_after_recovery")
    _, chosen, history = climb(recipe, evaluate, settings["metric_floor"], max_drop=settings["max_drop"],
                               float_metric=float_metric, say=say)
    entry = entries[chosen]
    entry.measurement.details["ladder"] = history
    return entry


def _quantization_not_faster(task: Any, recipe: Recipe, ptq: Entry, workdir: Path, settings: dict[str, Any],
                             trial: Any) -> str | None:
    """Why the ladder cannot pay off for this quantized candidate, or None where it can.

    The same recipe without its quantize step is measured on the same target, now (the host's
    speed drifts over a search, so a float trial timed an hour ago is no fair reference).
    """
    steps = tuple(s for s in recipe.steps if s.TYPE != "quantize")
    if len(steps) == len(recipe.steps):
        return None
    folder = fresh_dir(workdir / "float-reference")
    try:
        float_ms = time_recipe(task, Recipe(steps, recipe.target), folder, settings["threads"],
                               quick=settings["quick"], metric_floor=settings["metric_floor"])
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


def _counts(t: Any) -> bool:
    """Whether a finished trial spends the --trials budget: an interrupted one is run again instead,
    and one started past the budget measured nothing."""
    return t.state.is_finished() and not t.user_attrs.get("interrupted") and not t.user_attrs.get("over_budget")


def _spent(study: Any) -> int:
    return sum(_counts(t) for t in study.get_trials(deepcopy=False))


def _over_budget(trial: Any, trials: int | None) -> bool:
    """Whether the budget is already spent by the trials counted plus those started before this one
    and still running (workers each checked the count before their trials were created)."""
    if not trials:
        return False
    earlier = trial.study.get_trials(deepcopy=False)
    running = sum(t.state.name == "RUNNING" and t.number < trial.number for t in earlier)
    return sum(_counts(t) for t in earlier) + running >= trials


def _sampler_seed(settings: dict[str, Any], finished: int) -> int:
    """The seed of this process's sampler. The grid sampler gives trial number i the i-th point of
    its seeded shuffle, so every worker and every resume must shuffle alike (different seeds drew
    one point twice and left another unmeasured). Other samplers get one seed per worker, moved past
    the finished trials on resume (seeded as at the start, they re-proposed the points drawn then)."""
    if settings["sampler"] == "grid":
        return settings["seed"]
    return settings["seed"] + os.getpid() % 1000 * (settings["workers"] > 1) + 7919 * finished


def _load_study(settings: dict[str, Any], create: bool) -> Any:
    optuna = require("optuna", "the search")
    # Optuna's own warnings (e.g. GridSampler re-evaluating an exhausted grid) are about its
    # internals, not something a slimkit user can act on; slimkit says what matters itself.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space = SearchSpace.from_dict(settings["space"])
    constrained = True
    sampler = _sampler(settings["sampler"], space, _sampler_seed(settings, 0), constrained)
    kwargs: dict[str, Any] = {"study_name": STUDY_NAME, "storage": settings["storage"], "sampler": sampler,
                              "pruner": _pruner(settings["pruner"])}
    if settings["pruner"] != "none":
        kwargs["direction"] = "minimize"
    else:
        kwargs["directions"] = ["maximize", "minimize"]
    if create:
        study = optuna.create_study(load_if_exists=True, **kwargs)
    else:
        study = optuna.load_study(**{k: v for k, v in kwargs.items() if k in ("study_name", "storage", "sampler",
                                                                               "pruner")})
    done = sum(t.state.is_finished() for t in study.trials)  # a fresh search keeps its seed
    if done and settings["sampler"] != "grid":
        study.sampler = _sampler(settings["sampler"], space, _sampler_seed(settings, done), constrained)
    return study


def _run_worker(settings: dict[str, Any], quiet: bool = True, child: bool = False) -> None:
    """One worker: optimize until the shared trial count or the time budget is reached."""
    optuna = require("optuna")
    if child:
        _exit_with_parent()
    from slimkit.techniques import import_all

    import_all()
    say = (lambda _m: None) if quiet else _log
    study = _load_study(settings, create=False)
    objective = _objective_factory(settings, say)
    trials = settings["trials"]

    def stop_at_budget(study: Any, _trial: Any) -> None:
        if _spent(study) >= trials:
            study.stop()

    callbacks = [stop_at_budget] if trials else []
    remaining = None
    if settings["deadline"]:
        remaining = max(1.0, settings["deadline"] - time.time())
    while not (trials and _spent(study) >= trials):
        try:
            study.optimize(objective, n_trials=trials or None, timeout=remaining, callbacks=callbacks,
                           catch=(Exception,))
            return
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError) as exc:
            if isinstance(exc, ValueError) and not str(exc).startswith("Cannot tell a"):
                raise
            # Another process closed this trial first (a --resume that took its process for gone):
            # its files stay in the trial folder, and the study goes on with the next trial.
            say("a trial was closed by another process meanwhile; going on with the next")
            if settings["deadline"]:
                remaining = settings["deadline"] - time.time()
                if remaining <= 0:
                    return


def _log(message: str) -> None:
    from slimkit.ui import console

    console.log(message)


def _mark_interrupted(study: Any, names: set[str] | None = None) -> tuple[int, int]:
    """Trials left RUNNING by a process that is gone are failed and queued to run again (they spend
    no budget), so they are neither lost nor counted twice; returns (failed, left running). A trial
    whose process is alive on this host, or that runs on another host (workers sharing one storage),
    is left to its worker: failing it would throw away its result when that worker finishes."""
    optuna = require("optuna")
    host = socket.gethostname()
    failed = left = 0
    for t in study.trials:
        if t.state != optuna.trial.TrialState.RUNNING:
            continue
        owner_host, pid = t.user_attrs.get("host", host), t.user_attrs.get("pid")
        if owner_host != host or (isinstance(pid, int) and _alive(pid)):
            left += 1
            continue
        study._storage.set_trial_user_attr(t._trial_id, "error", "interrupted: its process ended before it finished")
        study._storage.set_trial_user_attr(t._trial_id, "interrupted", True)
        study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
        if t.params and (names is None or set(t.params) == names):  # its whole point was drawn: measure it first
            study.enqueue_trial(t.params)
        failed += 1
    return failed, left


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process is only starting: the trial is a leftover of an earlier run
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _exit_with_parent() -> None:
    """A worker process ends when the search that started it is killed (else it would go on alone,
    and a later --resume would race it for the same trials)."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=watch, daemon=True).start()


def default_space(targets: list[str], task_name: str) -> SearchSpace:
    """Every technique whose package imported, crossed with the available targets."""
    from slimkit.core.recipe import _RUNNERS
    from slimkit.techniques import import_all

    import_all()
    kwargs: dict[str, Any] = {"targets": tuple(targets), "fuse": (False, True)}
    if "prune" in _RUNNERS:
        kwargs.update(prune_ratio=(0.0, 0.3, 0.5, 0.7), recover_epochs=2, distill=(False, True),
                      temperature=(2.0, 4.0))
    if "quantize" in _RUNNERS:
        kwargs.update(quant_scheme=("none", "int8-static"))
    return SearchSpace(**kwargs)


def _identity_params(space: SearchSpace, target: str) -> dict[str, Any] | None:
    """Parameters of the unmodified model on ``target`` (the never-slower reference), if in the space."""
    identity = {"fuse": False, "prune_ratio": 0.0, "quant_scheme": "none", "distill": False}
    params: dict[str, Any] = {"target": target}
    for name, values in space.dimensions().items():
        if name == "target":
            continue
        if name in identity:
            if identity[name] not in values:
                return None
            params[name] = identity[name]
        else:
            params[name] = values[0]
    return params


@refusal_leaves_no_folder
def optimize(
    task: str = "digits-resnet18",
    *,
    max_drop: float | None = None,
    latency_budget: float | None = None,
    size_budget_mb: float | None = None,
    targets: list[str] | None = None,
    space: SearchSpace | None = None,
    trials: int | None = 20,
    time_budget: float | None = None,
    sampler: str | None = None,
    pruner: str | None = None,
    storage: str | None = None,
    workers: int = 1,
    resume: bool = False,
    out: str | Path = "runs/optimize",
    seed: int = 0,
    threads: int | None = None,
    quick: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Search technique combinations and targets for the fastest model within ``max_drop``.

    ``time_budget`` is in minutes. Returns the report (also written to ``out``); its ``best`` is
    the fastest trial meeting every constraint and faster than the unmodified model on the same
    target, and the winner's artifact is copied to ``out/best``.

    Example:
        >>> import tempfile
        >>> r = optimize("digits-cnn", targets=["torch", "onnxruntime"], trials=2, sampler="grid",
        ...              space=SearchSpace(targets=("torch", "onnxruntime"), fuse=(False,)),
        ...              out=tempfile.mkdtemp(), quick=True)
        >>> len(r.candidates)
        2
    """
    say = progress or (lambda _m: None)
    given_sampler, given_pruner = sampler, pruner  # None: the default, or on --resume the stored one
    sampler, pruner = sampler or "tpe", pruner or "none"
    if sampler not in SAMPLERS:
        raise UsageError(f"unknown sampler '{sampler}'", hint=f"choose one of: {', '.join(SAMPLERS)}")
    if pruner not in PRUNERS:
        raise UsageError(f"unknown pruner '{pruner}'", hint=f"choose one of: {', '.join(PRUNERS)}")
    if pruner != "none" and sampler == "nsga2":
        raise UsageError("pruners need a single-objective study, NSGA-II is multi-objective",
                         hint="use --sampler tpe/random/gp/grid with --pruner, or drop --pruner")
    for name, value in (("workers", workers), ("trials", trials)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise UsageError(f"--{name} must be a whole number >= 1, got {value!r}")
    check_threads(threads)
    if targets is not None:
        targets = target_names(targets)
    if isinstance(space, Mapping):
        space = SearchSpace.from_dict(space)
    elif space is not None and not isinstance(space, SearchSpace):
        raise UsageError(f"space must be a SearchSpace or a mapping of its fields, got {type(space).__name__}")
    if space is not None and targets is not None and set(space.targets) != set(targets):
        raise UsageError(f"the targets given ({', '.join(targets)}) differ from the space's "
                         f"({', '.join(space.targets)})", hint="give the targets in one place: the space or --targets")
    if space is not None and not resume:
        _check_space_runs_here(space)
    if not isinstance(task, str):
        if workers > 1:
            raise UsageError("a Task object lives in this process only; worker processes load the task by name",
                             hint="with --workers > 1 give the task as 'path/to/file.py:function'")
        _IN_PROCESS[task.name] = task
    check_budgets(max_drop=max_drop, latency_budget=latency_budget, size_budget=size_budget_mb,
                   time_budget=time_budget)
    if storage is not None:
        _check_storage(storage)
    out_dir = claim_out(out, "optimize")
    settings_file = _settings_path(out_dir)
    if resume and not settings_file.exists():
        raise UsageError(f"nothing to resume in {out_dir}", hint="run without --resume to start a search there")
    if not resume and settings_file.exists():
        raise UsageError(f"{out_dir} already holds a search",
                         hint="pass --resume to continue it, or choose another --out")
    if resume:  # before the task's code runs: a search is resumed for the task it was started for
        _check_resume_matches(json.loads(settings_file.read_text()),
                              task=task_key(task) if isinstance(task, str) else getattr(task, "name", task),
                              max_drop=max_drop, latency_budget=latency_budget,
                              size_budget=int(size_budget_mb * 2**20) if size_budget_mb else None,
                              targets=targets, space=space, sampler=given_sampler, pruner=given_pruner)
    out_dir.mkdir(parents=True, exist_ok=True)
    task_obj = load_task(task, seed=seed)

    if resume:
        settings = json.loads(settings_file.read_text())
        baseline = Entry.from_dict(json.loads((out_dir / "baseline.json").read_text()))
        if trials is not None:
            settings["trials"] = max(trials, settings["trials"] or 0)
        if time_budget is None and trials is None:
            time_budget = settings.get("time_budget")  # same budget again, never an endless search
    else:
        from slimkit.api._common import check_targets

        wanted = targets or ["torch", "onnxruntime", "openvino"]
        usable = [name for name, why in check_targets(wanted) if why is None]
        if not usable:
            raise UsageError("none of the requested targets is available here", hint="see `slimkit list`")
        space = space or default_space(usable, task_obj.name)
        threads = threads or default_threads()
        say(f"measuring the baseline (torch eager, {threads} threads)")
        baseline = measure_model(task_obj.build_model(), task_obj, "torch", fresh_dir(out_dir / "baseline"),
                                 threads, entry_id="baseline", recipe=[], quick=quick, out=out_dir)
        atomic_write_json(out_dir / "baseline.json", baseline.to_dict())
        _measure_references(task_obj, space, out_dir, threads, quick, say)
        drop = task_obj.tolerance if max_drop is None else max_drop
        settings = {
            "task": task_key(task) if isinstance(task, str) else task_obj.name, "task_name": task_obj.name,
            "seed": seed, "threads": threads,
            "quick": quick, "space": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(space).items()},
            "sampler": sampler, "pruner": pruner, "workers": workers, "trials": trials,
            "max_drop": drop, "metric_floor": baseline.measurement.metric - drop,
            "latency_budget": latency_budget,
            "size_budget": int(size_budget_mb * 2**20) if size_budget_mb else None,
            "storage": storage or f"sqlite:///{(out_dir / 'study.db').resolve()}", "out": str(out_dir),
        }
    if not settings["trials"] and not time_budget:
        settings["trials"] = 20  # neither budget given: a bounded default
    settings["time_budget"] = time_budget
    settings["deadline"] = time.time() + time_budget * 60 if time_budget else None
    settings["workers"] = workers
    atomic_write_json(settings_file, settings)

    study = _load_study(settings, create=True)
    if resume:
        n, left = _mark_interrupted(study, set(SearchSpace.from_dict(settings["space"]).dimensions()))
        done = sum(t.state.name == "COMPLETE" and "duplicate_of" not in t.user_attrs for t in study.trials)
        say(f"resuming: {done} finished trials kept" + (f", {n} interrupted trial(s) to run again" if n else "")
            + (f", {left} trial(s) still running in other processes left to them" if left else ""))
    elif settings["sampler"] != "grid":
        space_obj = SearchSpace.from_dict(settings["space"])
        for target in space_obj.targets:
            params = _identity_params(space_obj, target)
            if params is not None:
                study.enqueue_trial(params, skip_if_exists=True)

    started = time.time()
    if workers == 1:
        _run_worker(settings, quiet=progress is None)
    else:
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=_run_worker, args=(settings, progress is None, True)) for _ in range(workers)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
    final = _load_study(settings, create=False)
    _measure_references(task_obj, SearchSpace.from_dict(settings["space"]), out_dir, settings["threads"],
                        settings["quick"], say, measured=_identity_measured(final))
    report = build_report(settings, final, baseline, time.time() - started)
    if report.best:
        from slimkit.search._retime import retime_best

        say("re-timing the best model in turns with the baseline")
        report.extra["search"]["retimed"] = retime_best(report, task_obj, out_dir, settings["threads"],
                                                        quick=settings["quick"])
        _trust_the_retiming(report, report.extra["search"]["retimed"], out_dir)
    report.write(out_dir)
    return report


def _check_space_runs_here(space: SearchSpace) -> None:
    """A space whose targets cannot run here, or a quantization scheme no target of it offers, is a
    usage error before any work (every such trial failed, and the search ended with no answer)."""
    from slimkit.api._common import check_targets

    missing = [f"{name} ({why})" for name, why in check_targets(list(space.targets)) if why is not None]
    if missing:
        raise UsageError(f"search space: target(s) not available here: {'; '.join(missing)}",
                         hint="drop them from the space's targets (see `slimkit list`)")
    for scheme in (s for s in space.quant_scheme if s and s != "none"):
        why = _offered_nowhere(space.targets, scheme, None)
        if why:
            raise UsageError(f"search space: quant_scheme {scheme} runs on none of its targets: {why}",
                             hint="see `slimkit list` for the scheme x target matrix")
    for calibration in space.calibration if "int8-static" in space.quant_scheme else ():
        why = _offered_nowhere(space.targets, "int8-static", calibration)
        if why:
            raise UsageError(f"search space: calibration {calibration} is offered on none of its targets: {why}",
                             hint="see `slimkit list` for what each runtime offers")


def _offered_nowhere(targets: tuple[str, ...], scheme: str, calibration: str | None) -> str | None:
    """Why ``scheme`` (with ``calibration``) runs on none of ``targets``; None when one offers it."""
    from slimkit.techniques.quantize import check

    why = []
    for target in targets:
        try:
            check(scheme, target, calibration)
            return None
        except SlimkitError as err:
            why.append(err.message)
    return "; ".join(why)


def _not_offered(recipe: Recipe) -> str | None:
    """Why a point's quantization cannot run on its target (the space crosses every scheme with every
    target, e.g. int8-static with torch); the point is answered at once instead of after its pruning."""
    from slimkit.techniques.quantize import check

    for step in recipe.steps:
        if step.TYPE == "quantize":
            try:
                check(step.scheme, recipe.target, step.calibration)
            except SlimkitError as err:
                return err.message
    return None


def _measure_references(task: Task, space: SearchSpace, out: Path, threads: int, quick: bool,
                        say: Callable[[str], None], measured: set[str] | None = None) -> None:
    """The unmodified model on each target where no trial measured it: without it a quantized model
    three times slower than float on its own target was named best. Called at the start for targets
    whose unmodified model the space cannot draw (e.g. int8 only), and again after the trials for
    targets whose identity point the budget did not reach (``measured``: targets that have one).
    Kept in ``references.json``; the report lists them beside the trials."""
    path = out / "references.json"
    refs = json.loads(path.read_text()) if path.exists() else []
    have = {r["target"] for r in refs} | (measured or set())
    for target in space.targets:
        if target == "torch" or target in have or (measured is None and _identity_params(space, target) is not None):
            continue  # torch eager is the baseline; an identity point in the space may still be drawn
        say(f"measuring the unmodified model on {target} (the never-slower reference; no trial measured it)")
        entry = evaluate_recipe(task, Recipe((), target), fresh_dir(out / "references" / target), threads,
                                entry_id=f"ref:float@{target}", quick=quick, out=out)
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


def _check_resume_matches(settings: dict[str, Any], **given: Any) -> None:
    """--resume continues the stored search as it was defined; a different task, budget, target list or
    space given with it is an error, not silently ignored (the finished trials were judged by the old ones)."""
    stored_space = SearchSpace.from_dict(settings["space"])
    stored = {"task": settings["task"], "max_drop": settings["max_drop"], "latency_budget": settings["latency_budget"],
              "size_budget": settings["size_budget"], "targets": list(stored_space.targets), "space": stored_space,
              "sampler": settings["sampler"], "pruner": settings["pruner"]}
    changed = []
    stored["task"] = task_key(stored["task"])  # a search stored before task files were made absolute
    for name, value in given.items():
        if value is None:
            continue
        if name == "targets":
            value = list(value)
        if value != stored[name]:
            changed.append(f"{name} {value!r} (stored: {stored[name]!r})" if name != "space" else "space")
    if changed:
        raise UsageError(f"--resume continues the search stored in {settings['out']} with its own settings; "
                         f"these differ: {'; '.join(changed)}",
                         hint="resume with the stored settings (leave the others out), or start a new search "
                              "in another --out")


def _check_storage(url: str) -> None:
    """Open the storage once before any work: a bad URL or a missing database driver is a usage error,
    not a traceback after the baseline was measured."""
    optuna = require("optuna", "the search")
    try:
        optuna.storages.RDBStorage(url)
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy and drivers raise many kinds
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise UsageError(f"cannot open the study storage {url}: {reason}",
                         hint="an Optuna RDB URL such as sqlite:///study.db or postgresql://user:pass@host/db "
                              "(PostgreSQL needs `pip install psycopg2-binary`)") from None


def build_report(settings: dict[str, Any], study: Any, baseline: Entry, elapsed: float) -> Report:
    """The report from the study's storage alone: every finished trial, constraints, Pareto, best."""
    out = Path(settings["out"])
    report = Report(settings.get("task_name", settings["task"]), command_line("optimize"),
                    environment(settings["threads"]), baseline)
    failed: list[dict[str, Any]] = []
    stopped: list[dict[str, Any]] = []
    interrupted = 0
    float_by_target: dict[str, str] = {}
    refs = out / "references.json"
    for raw in json.loads(refs.read_text()) if refs.exists() else []:
        entry = Entry.from_dict(raw)
        report.candidates.append(entry)
        float_by_target[entry.target] = entry.id
    for t in sorted(study.trials, key=lambda t: t.number):
        if "entry" in t.user_attrs and t.state.name == "COMPLETE":
            entry = Entry.from_dict(t.user_attrs["entry"])
            report.candidates.append(entry)
            if len(entry.recipe) == 1:  # only the target step: the unmodified model there
                float_by_target.setdefault(entry.target, entry.id)
        elif "stopped_early" in t.user_attrs:
            stopped.append({"trial": t.number, "recipe": t.user_attrs.get("recipe"),
                            "why": t.user_attrs["stopped_early"]})
        elif t.user_attrs.get("interrupted"):
            interrupted += 1
        elif t.user_attrs.get("over_budget"):
            continue
        elif t.state.name in ("FAIL", "PRUNED"):
            failed.append({"trial": t.number, "recipe": t.user_attrs.get("recipe"),
                           "error": t.user_attrs.get("error", t.state.name.lower())})
    for c in report.candidates:
        c.float_reference = float_by_target.get(c.target)
    finalize(report, settings["max_drop"], settings["latency_budget"], settings["size_budget"])
    _size_front(report)
    closest = None
    if report.best is None and report.candidates:
        floor = settings["metric_floor"]
        near = max(report.candidates, key=lambda c: (meets_floor(c.measurement.metric, floor), c.measurement.metric,
                                                     -c.latency_ms))
        closest = {"id": near.id, "missed": _what_missed(near, settings)}
    report.extra["search"] = {
        "sampler": settings["sampler"], "pruner": settings["pruner"], "workers": settings["workers"],
        "storage": settings["storage"], "space": settings["space"],
        "trials_finished": sum(not c.id.startswith("ref:") for c in report.candidates),
        "trials_failed": failed, "trials_stopped_early": stopped,
        # Samplers re-propose measured points in small spaces; those trials are answered from the study.
        "trials_repeated": sum(t.state.name == "COMPLETE" and "duplicate_of" in t.user_attrs for t in study.trials),
        "trials_interrupted": interrupted, "seconds": round(elapsed, 1), "closest": closest,
    }
    _copy_best(report, out)
    return report


def _copy_best(report: Report, out: Path) -> None:
    """The best trial's artifact folder, copied to ``out/best`` (replacing one copied before)."""
    if not report.best:
        return
    best = report.entry(report.best)
    if best.id.startswith("ref:"):
        src = out / "references" / best.target
    else:
        src = out / "trials" / best.id.split(":")[0].lstrip("t").zfill(4)
    if src.is_dir():
        dest = out / "best"
        tmp = out / ".best.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp)
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)
        report.extra["search"]["best_artifact"] = str(dest.relative_to(out))


def _trust_the_retiming(report: Report, retimed: dict[str, Any] | None, out: Path) -> None:
    """If the end-of-run re-timing, on a quiet machine, finds the best no faster than the unmodified
    model on its target, that unmodified model is the answer: the best must never be slower than it."""
    if not retimed or retimed.get("vs_reference") is None or retimed["vs_reference"] > 1.0:
        return
    if retimed.get("other_load_cores") is not None and retimed["other_load_cores"] >= NOTICEABLE:
        return  # a busy machine's re-timing is no better evidence than the table's
    ref = report.entry(retimed["reference"])
    if not ref.meets_constraints or ref.latency_ms >= report.baseline.latency_ms:
        return
    old = report.best
    report.best = ref.id
    ref.notes.append(f"re-timed at the end: best instead of {old}, which that re-timing found no faster than "
                     f"this unmodified model on {ref.target} ({retimed['vs_reference']:.2f}x)")
    _copy_best(report, out)


def _size_front(report: Report) -> None:
    report.extra["pareto_metric_size"] = pareto_ids(report.entries, lambda e: e.measurement.size_bytes)


def _what_missed(entry: Entry, settings: dict[str, Any]) -> str:
    m = entry.measurement
    missed = []
    if not meets_floor(m.metric, settings["metric_floor"]):
        missed.append(f"{m.metric_name} {m.metric:.4g} below the floor {settings['metric_floor']:.4g}")
    if settings["latency_budget"] and m.latency.median > settings["latency_budget"]:
        missed.append(f"latency {m.latency.median:.3f} ms over the budget {settings['latency_budget']} ms")
    if settings["size_budget"] and m.size_bytes > settings["size_budget"]:
        from slimkit.report._format import fmt_bytes

        missed.append(f"size {fmt_bytes(m.size_bytes)} over the budget {fmt_bytes(settings['size_budget'])}")
    if missed:
        return "; ".join(missed)
    if len(entry.recipe) == 1 and entry.target == "torch":  # only the target step: the baseline itself
        return "it meets the constraints but is the unmodified model on torch eager: no faster candidate was found"
    return "it meets the constraints but is no faster than the unmodified model"
