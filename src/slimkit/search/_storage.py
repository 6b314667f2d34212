"""The Optuna study of a search: its storage, samplers and pruners, and the trial budget.

The study lives in SQLite inside the run folder (or any Optuna RDB storage URL), so a search killed
at any point resumes with every finished trial, and several worker processes share it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any

from slimkit._optional import require
from slimkit.errors import SlimkitError, UsageError, first_line
from slimkit.search._process import _alive
from slimkit.search._settings import SearchSettings, as_settings
from slimkit.search.names import PRUNERS, SAMPLERS
from slimkit.search.space import SearchSpace

STUDY_NAME = "slimkit"


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


def make_pruner(name: str) -> Any:
    """The Optuna pruner named ``name`` (one of :data:`PRUNERS`)."""
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


def _check_storage(url: str) -> None:
    """Open the storage once before any work: a bad URL or a missing database driver is a usage error,
    not a traceback after the baseline was measured."""
    optuna = require("optuna", "the search")
    try:
        optuna.storages.RDBStorage(url)
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy and drivers raise many kinds
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise UsageError(f"cannot open the study storage {shown_url(url)}: {reason}",
                         hint="an Optuna RDB URL such as sqlite:///study.db or postgresql+psycopg://user:pass@host/db "
                              "(the search extra installs psycopg)") from None


def shown_url(url: str) -> str:
    """A storage URL as it may be printed: its password masked.

    Example:
        >>> shown_url("postgresql+psycopg://me:secret@db:5432/s")
        'postgresql+psycopg://me:***@db:5432/s'
    """
    import re

    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def _counts(t: Any) -> bool:
    """Whether a finished trial spends the --trials budget: an interrupted one is run again instead,
    one started past the budget measured nothing, and the unmodified model on a target (queued
    first as the never-slower reference) is a measurement the search needs, not a trial asked for."""
    return (t.state.is_finished() and not t.user_attrs.get("interrupted") and not t.user_attrs.get("over_budget")
            and not t.user_attrs.get("reference") and not t.user_attrs.get("skipped"))


def _spent(study: Any) -> int:
    return sum(_counts(t) for t in study.get_trials(deepcopy=False))


def _skipped(study: Any) -> int:
    """Points answered at once because this host's targets do not offer them (they spend no budget)."""
    return sum(bool(t.user_attrs.get("skipped")) for t in study.get_trials(deepcopy=False))


def _over_budget(trial: Any, trials: int | None) -> bool:
    """Whether the budget is already spent by the trials counted plus those started before this one
    and still running (workers each checked the count before their trials were created)."""
    if not trials or trial.user_attrs.get("reference"):
        return False  # a reference (the unmodified model on a target) is measured whatever the budget
    earlier = trial.study.get_trials(deepcopy=False)
    running = sum(t.state.name == "RUNNING" and t.number < trial.number and not t.user_attrs.get("reference")
                  for t in earlier)
    return sum(_counts(t) for t in earlier) + running >= trials


def _sampler_seed(settings: SearchSettings, finished: int) -> int:
    """The seed of this process's sampler. The grid sampler gives trial number i the i-th point of
    its seeded shuffle, so every worker and every resume must shuffle alike (different seeds drew
    one point twice and left another unmeasured). Other samplers get one seed per worker, moved past
    the finished trials on resume (seeded as at the start, they re-proposed the points drawn then)."""
    if settings.sampler == "grid":
        return settings.seed
    return settings.seed + os.getpid() % 1000 * (settings.workers > 1) + 7919 * finished


def _load_study(settings: SearchSettings | Mapping[str, Any], create: bool) -> Any:
    optuna = require("optuna", "the search")
    settings = as_settings(settings)
    # Optuna's own warnings (e.g. GridSampler re-evaluating an exhausted grid) are about its
    # internals, not something a slimkit user can act on; slimkit says what matters itself.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space = settings.search_space()
    constrained = True
    sampler = _sampler(settings.sampler, space, _sampler_seed(settings, 0), constrained)
    kwargs: dict[str, Any] = {"study_name": STUDY_NAME, "storage": settings.storage, "sampler": sampler,
                              "pruner": make_pruner(settings.pruner)}
    if settings.single_objective:
        kwargs["direction"] = "minimize"
    else:
        kwargs["directions"] = ["maximize", "minimize"]
    try:
        if create:
            study = optuna.create_study(load_if_exists=True, **kwargs)
        else:
            study = optuna.load_study(**{k: v for k, v in kwargs.items() if k in ("study_name", "storage", "sampler",
                                                                                   "pruner")})
        study.trials  # noqa: B018 - read once here: a damaged database fails now, with this message
    except Exception as exc:  # sqlalchemy's errors, Optuna's KeyError for a missing study, a truncated file
        where = shown_url(settings.storage.removeprefix("sqlite:///"))
        local = settings.storage.startswith("sqlite:")
        raise SlimkitError(f"the search's study ({where}) cannot be read: {type(exc).__name__}: {first_line(exc)}",
                           hint="it is damaged or not a slimkit study; start the search again in another --out "
                                "(each finished trial's files stay in trials/)" if local else
                                "check that the database server is reachable and the URL right, then "
                                "--resume") from None
    done = sum(t.state.is_finished() for t in study.trials)  # a fresh search keeps its seed
    if done and settings.sampler != "grid":
        study.sampler = _sampler(settings.sampler, space, _sampler_seed(settings, done), constrained)
    return study


def _mark_interrupted(study: Any, names: set[str] | None = None) -> tuple[int, int]:
    """Trials left RUNNING by a process that is gone are failed and queued to run again (they spend
    no budget), so they are neither lost nor counted twice; returns (failed, left running). A trial
    whose process is alive on this host, or that runs on another host (workers sharing one storage),
    is left to its worker: failing it would throw away its result when that worker finishes."""
    optuna = require("optuna")
    host = socket.gethostname()
    failed = left = 0
    requeued = {t.user_attrs.get("requeue_of") for t in study.trials}
    for t in study.trials:
        if t.state == optuna.trial.TrialState.FAIL and t.user_attrs.get("interrupted") and t.number not in requeued:
            # Stopped by a signal in its own process (Ctrl-C, SIGTERM): stored failed, run again once.
            _requeue(study, t, names)
            failed += 1
            continue
        if t.state != optuna.trial.TrialState.RUNNING:
            continue
        owner_host, pid = t.user_attrs.get("host", host), t.user_attrs.get("pid")
        if owner_host != host or (isinstance(pid, int) and _alive(pid)):
            left += 1
            continue
        study._storage.set_trial_user_attr(t._trial_id, "error", "interrupted: its process ended before it finished")
        study._storage.set_trial_user_attr(t._trial_id, "interrupted", True)
        study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
        _requeue(study, t, names)
        failed += 1
    return failed, left


def _requeue(study: Any, t: Any, names: set[str] | None) -> None:
    """Queue an interrupted trial's point to run first (when its whole point was drawn); the queued
    trial names it (``requeue_of``), so a later resume does not queue it again."""
    attrs = {"requeue_of": t.number, **({"reference": True} if t.user_attrs.get("reference") else {})}
    if t.params and (names is None or set(t.params) == names):
        study.enqueue_trial(t.params, user_attrs=attrs)
