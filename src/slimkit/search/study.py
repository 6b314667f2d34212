"""``slimkit optimize``: an Optuna study over recipes, measured on the targets.

The study lives in SQLite inside the run folder (or any Optuna RDB storage URL), so a
search killed at any point resumes with every finished trial, and several worker processes
— on one machine or many — share it. Every trial's full report entry is kept in the study
itself (trial user attributes), so the report is rebuilt from storage alone.

This module holds :func:`optimize`, step by step; the steps live in the modules by concern:
``_settings`` (what is stored in ``search.json``), ``_storage`` (the Optuna study), ``_objective``
(one trial), ``_references``, ``_offers``, ``_workers`` and ``_report``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from torch import nn

from slimkit.core.files import atomic_write_json
from slimkit.core.task import Task
from slimkit.errors import SlimkitError, UsageError, first_line
from slimkit.pipeline import (
    Recipe,
    check_budgets,
    check_seed,
    check_threads,
    claim_out,
    default_threads,
    fresh_dir,
    measure_model,
    refusal_leaves_no_folder,
    target_names,
)
from slimkit.pipeline.describe import describe
from slimkit.pipeline.paired import leading, pair_speedups
from slimkit.pipeline.result import Result
from slimkit.pipeline.select import check_objective
from slimkit.report import write_report
from slimkit.report.schema import Entry, Report
from slimkit.search._objective import _IN_PROCESS
from slimkit.search._objective import _climb as _climb  # re-exported: tests and callers import these from here
from slimkit.search._objective import _early_stop as _early_stop
from slimkit.search._objective import _finished_twin as _finished_twin
from slimkit.search._offers import _check_space_runs_here
from slimkit.search._process import signals_as_interrupt
from slimkit.search._references import _identity_measured, _identity_params, _measure_references
from slimkit.search._report import _best_folder, _copy_best, build_report, closest
from slimkit.search._retime import describe_pairing
from slimkit.search._settings import SearchSettings, _check_resume_matches, _settings_path
from slimkit.search._storage import (
    PRUNERS,
    SAMPLERS,
    STUDY_NAME,
    _check_storage,
    _load_study,
    _mark_interrupted,
    make_pruner,
)
from slimkit.search._storage import _over_budget as _over_budget
from slimkit.search._storage import _sampler as _sampler
from slimkit.search._storage import _spent as _spent
from slimkit.search._trial import evaluate_recipe
from slimkit.search._workers import run_workers
from slimkit.search.space import SearchSpace
from slimkit.tasks import load_task
from slimkit.tasks._loader import task_key
from slimkit.tasks.user import MetricLike, resolve_task

__all__ = ["PRUNERS", "SAMPLERS", "STUDY_NAME", "SearchSettings", "build_report", "default_space", "make_pruner",
           "optimize"]


def default_space(targets: list[str], task_name: str) -> SearchSpace:
    """Every technique that can run here, crossed with the available targets."""
    from slimkit.plugins import availability, techniques

    usable = {name for name, tech in techniques().items() if availability(tech) is None}
    kwargs: dict[str, Any] = {"targets": tuple(targets), "fuse": (False, True)}
    if "prune" in usable:
        kwargs.update(prune_ratio=(0.0, 0.3, 0.5, 0.7), recover_epochs=2, distill=(False, True),
                      temperature=(2.0, 4.0))
    if "quantize" in usable:
        kwargs.update(quant_scheme=("none", "int8-static"))
    return SearchSpace(**kwargs)


@refusal_leaves_no_folder
def optimize(
    task: str | Task | nn.Module = "digits-resnet18",
    data: Any = None,
    *,
    eval_data: Any = None,
    metric: MetricLike | None = None,
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
    objective: str | None = None,
) -> Result:
    """Search technique combinations and targets for the fastest model within ``max_drop``.

    ``task`` is a task (name, ``file.py:function`` or :class:`Task`) or your own ``nn.Module``
    with ``data`` (and optionally ``eval_data`` and ``metric``, as in :func:`slimkit.quantize`).

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
    check_seed(seed)
    if objective is not None:
        check_objective(objective)
    task = resolve_task(task, data, eval_data=eval_data, metric=metric, seed=seed, needs_data="a search")
    given_sampler, given_pruner = sampler, pruner  # None: the default, or on --resume the stored one
    sampler, pruner = sampler or "tpe", pruner or "none"
    targets, space = _check_arguments(task, sampler=sampler, pruner=pruner, workers=workers, trials=trials,
                                      threads=threads, targets=targets, space=space, resume=resume)
    check_budgets(max_drop=max_drop, latency_budget=latency_budget, size_budget=size_budget_mb,
                  time_budget=time_budget)
    if storage is not None:
        _check_storage(storage)
    out_dir = claim_out(out, "optimize")
    size_budget = int(size_budget_mb * 2**20) if size_budget_mb else None
    settings_file = _check_folder(out_dir, resume, task=task, max_drop=max_drop, latency_budget=latency_budget,
                                  size_budget=size_budget, targets=targets, space=space, sampler=given_sampler,
                                  pruner=given_pruner)
    out_dir.mkdir(parents=True, exist_ok=True)
    task_obj = load_task(task, seed=seed)
    if resume:
        settings, baseline, time_budget = _resumed(out_dir, settings_file, trials, time_budget)
    else:
        settings, baseline = _started(task, task_obj, out_dir, targets=targets, space=space, threads=threads,
                                      quick=quick, seed=seed, sampler=sampler, pruner=pruner, workers=workers,
                                      trials=trials, max_drop=max_drop, latency_budget=latency_budget,
                                      size_budget=size_budget, storage=storage, say=say)
    settings = _with_budget(settings, time_budget, workers)
    if objective is not None:  # chosen afresh on a resume too: it decides only the final choice
        settings = replace(settings, objective=objective)
    atomic_write_json(settings_file, settings.to_dict())
    _prepare_study(settings, resume, say)
    report = _run_trials(settings, task_obj, baseline, out_dir, say, quiet=progress is None)
    return Result.of(report, out_dir, task_obj.build_model())


def _run_trials(settings: SearchSettings, task_obj: Task, baseline: Entry, out_dir: Path,
                say: Callable[[str], None], *, quiet: bool) -> Report:
    """The trials in this process or its workers, then the report; a stop (Ctrl-C, SIGTERM) writes
    the report of the trials that finished, marked partial, and goes on as KeyboardInterrupt."""
    started = time.time()
    try:
        with signals_as_interrupt():
            run_workers(settings, quiet=quiet)
    except KeyboardInterrupt:
        _write_partial(settings, baseline, out_dir, started, say)
        raise
    return _finish(settings, task_obj, baseline, out_dir, started, say)


def _check_arguments(task: str | Task, *, sampler: str, pruner: str, workers: int, trials: int | None,
                     threads: int | None, targets: list[str] | None, space: SearchSpace | Mapping[str, Any] | None,
                     resume: bool) -> tuple[list[str] | None, SearchSpace | None]:
    """Refuse bad arguments before any work; returns the targets and the space, normalized."""
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
    return targets, space


def _check_folder(out_dir: Path, resume: bool, *, task: str | Task, **given: Any) -> Path:
    """The settings file of the search in ``out_dir``: there to resume, not there to start; a resume
    given other settings than the stored ones is refused. Runs before a task file's code does (a
    search is resumed for the task it was started for); a model given in Python was read already."""
    settings_file = _settings_path(out_dir)
    if resume and not settings_file.exists():
        raise UsageError(f"nothing to resume in {out_dir}", hint="run without --resume to start a search there")
    if not resume and settings_file.exists():
        raise UsageError(f"{out_dir} already holds a search",
                         hint="pass --resume to continue it, or choose another --out")
    if resume:
        _check_resume_matches(_stored_settings(settings_file),
                              task=task_key(task) if isinstance(task, str) else getattr(task, "name", task),
                              **given)
    return settings_file


def _read_stored(path: Path, what: str) -> Any:
    """A JSON file the search wrote, read back; a damaged or missing one is named with the way out."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        why = "is missing" if isinstance(exc, FileNotFoundError) else f"cannot be read ({first_line(exc, 120)})"
        raise SlimkitError(f"the search's {what} {path} {why}",
                           hint="the run folder is damaged; start the search again in another --out") from None


def _stored_settings(path: Path) -> SearchSettings:
    raw = _read_stored(path, "settings")
    try:
        settings = SearchSettings.from_dict(raw)
        settings.search_space()
    except (TypeError, ValueError, AttributeError, SlimkitError) as exc:
        raise SlimkitError(f"the search's settings {path} are damaged: {first_line(exc, 120)}",
                           hint="start the search again in another --out") from None
    return settings


def _rerooted(settings: SearchSettings, out_dir: Path) -> SearchSettings:
    """The settings of a search resumed in ``out_dir``: a copied or moved run folder resumes in place
    (its own study.db and trials/), never in the folder it was copied from."""
    old = Path(settings.out)
    db = Path(settings.storage.removeprefix("sqlite:///"))
    # The run folder's own study: in the folder the settings name (a shared SQLite file elsewhere,
    # named study.db too, stays shared); by folder name only for old settings that stored a relative out.
    own = settings.storage == "" or (settings.storage.startswith("sqlite:///") and db.name == "study.db"
                                     and (db.parent == old if old.is_absolute() else db.parent.name == old.name))
    storage = f"sqlite:///{(out_dir / 'study.db').resolve()}" if own else settings.storage
    return replace(settings, out=str(out_dir.resolve()), storage=storage)


def _resumed(out_dir: Path, settings_file: Path, trials: int | None,
             time_budget: float | None) -> tuple[SearchSettings, Entry, float | None]:
    """The stored settings and baseline of a search to resume, and its time budget."""
    settings = _rerooted(_stored_settings(settings_file), out_dir)
    try:
        baseline = Entry.from_dict(_read_stored(out_dir / "baseline.json", "baseline"))
    except (TypeError, KeyError, ValueError, AttributeError) as exc:
        raise SlimkitError(f"the search's baseline {out_dir / 'baseline.json'} is damaged ({first_line(exc, 120)})",
                           hint="start the search again in another --out") from None
    if trials is not None:
        settings = replace(settings, trials=max(trials, settings.trials or 0))
    if time_budget is None and trials is None:
        time_budget = settings.time_budget  # same budget again, never an endless search
    return settings, baseline, time_budget


def _started(task: str | Task, task_obj: Task, out_dir: Path, *, targets: list[str] | None,
             space: SearchSpace | None, threads: int | None, quick: bool, seed: int, sampler: str, pruner: str,
             workers: int, trials: int | None, max_drop: float | None, latency_budget: float | None,
             size_budget: int | None, storage: str | None,
             say: Callable[[str], None]) -> tuple[SearchSettings, Entry]:
    """A new search: the baseline and the references it needs measured, and its settings."""
    from slimkit.pipeline import check_targets

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
    drop = task_obj.default_drop(baseline.measurement.metric) if max_drop is None else max_drop
    settings = SearchSettings(
        task=task_key(task) if isinstance(task, str) else task_obj.name, task_name=task_obj.name,
        seed=seed, threads=threads, quick=quick, space=space.to_dict(), sampler=sampler, pruner=pruner,
        workers=workers, trials=trials, max_drop=drop, metric_floor=baseline.measurement.metric - drop,
        latency_budget=latency_budget, size_budget=size_budget,
        storage=storage or f"sqlite:///{(out_dir / 'study.db').resolve()}", out=str(out_dir.resolve()))
    return settings, baseline


def _with_budget(settings: SearchSettings, time_budget: float | None, workers: int) -> SearchSettings:
    """The settings with this run's budgets and worker count."""
    trials = settings.trials
    if not trials and not time_budget:
        trials = 20  # neither budget given: a bounded default
    deadline = time.time() + time_budget * 60 if time_budget else None
    return replace(settings, trials=trials, time_budget=time_budget, deadline=deadline, workers=workers)


def _prepare_study(settings: SearchSettings, resume: bool, say: Callable[[str], None]) -> None:
    """Create or reopen the study: a resume queues its interrupted trials again; a new search queues
    the unmodified model on each target first (the never-slower references), except on a grid."""
    study = _load_study(settings, create=True)
    space = settings.search_space()
    if resume:
        n, left = _mark_interrupted(study, set(space.dimensions()))
        done = sum(t.state.name == "COMPLETE" and "duplicate_of" not in t.user_attrs for t in study.trials)
        say(f"resuming: {done} finished trials kept" + (f", {n} interrupted trial(s) to run again" if n else "")
            + (f", {left} trial(s) still running in other processes left to them" if left else ""))
    elif settings.sampler != "grid":
        for target in space.targets:
            params = _identity_params(space, target)
            if params is not None:
                study.enqueue_trial(params, user_attrs={"reference": True}, skip_if_exists=True)


def _write_partial(settings: SearchSettings, baseline: Entry, out_dir: Path, started: float,
                   say: Callable[[str], None]) -> None:
    """The report of the trials that finished before a stop, marked partial (no references measured
    and no re-timing: the user asked to stop). --resume continues the search and rewrites it."""
    try:
        report = build_report(settings, _load_study(settings, create=False), baseline, time.time() - started)
        report.extra["search"]["partial"] = True
        _copy_best(report, out_dir, settings)
        write_report(report, out_dir)
        say(f"stopped: the report of the finished trials is in {out_dir}/report.md (partial); "
            "--resume continues the search")
    except Exception as exc:  # a second signal or a damaged study: the stop itself must not fail
        say(f"stopped; the partial report could not be written ({type(exc).__name__}: {exc})")


def _rebuild_best(report: Report, settings: SearchSettings, task_obj: Task, out_dir: Path,
                  say: Callable[[str], None]) -> None:
    """The best trial ran in another process sharing the storage (another machine): its files are
    there, not here. Its recipe is run again here (seeded: the same model), so this run folder holds
    the deployable best for best/."""
    best = report.entry(report.best or "")
    say(f"the best ({best.id}) was measured by another process sharing the study: building it here")
    steps = [s for s in best.recipe if s.get("type") != "target"]
    workdir = fresh_dir(out_dir / "trials" / best.id.split(":")[0].lstrip("t").zfill(4))
    evaluate_recipe(task_obj, Recipe.from_dict({"steps": steps, "target": best.target}), workdir,
                    settings.threads, entry_id=best.id, quick=settings.quick, out=out_dir)


def _finish(settings: SearchSettings, task_obj: Task, baseline: Entry, out_dir: Path, started: float,
            say: Callable[[str], None]) -> Report:
    """After the trials: the references the budget did not reach, the report, the best re-timed."""
    final = _load_study(settings, create=False)
    _measure_references(task_obj, settings.search_space(), out_dir, settings.threads, settings.quick, say,
                        measured=_identity_measured(final))
    report = build_report(settings, final, baseline, time.time() - started)
    if report.best and _best_folder(report, out_dir) is None:  # measured on another machine: built here
        _rebuild_best(report, settings, task_obj, out_dir, say)
    # The best is chosen by paired speed-ups: the leading models timed in turns with the baseline.
    pairing = pair_speedups(report, task_obj, out_dir, settings.threads, quick=settings.quick,
                            ids=leading(report), say=say)
    report.extra["search"]["retimed"] = describe_pairing(report, pairing, quick=settings.quick)
    if report.best and _best_folder(report, out_dir) is None:
        _rebuild_best(report, settings, task_obj, out_dir, say)
    _copy_best(report, out_dir, settings)
    report.extra["search"]["closest"] = closest(report, settings)
    if report.best and (out_dir / "best").is_dir():
        describe(out_dir / "best", task_obj, report.entry(report.best))
    write_report(report, out_dir)
    return report
