"""The worker processes of a search: each runs trials until the shared budget is spent."""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

from slimkit._optional import require
from slimkit.search._objective import _objective_factory
from slimkit.search._process import _exit_with_parent, signals_as_interrupt
from slimkit.search._settings import SearchSettings
from slimkit.search._storage import _load_study, _skipped, _spent


def run_workers(settings: SearchSettings, quiet: bool) -> None:
    """Run the search's trials in this process, or in ``settings.workers`` processes sharing the study."""
    if settings.workers == 1:
        _run_worker(settings, quiet=quiet)
        return
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_run_worker, args=(settings, quiet, True)) for _ in range(settings.workers)]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        # Stopped (Ctrl-C reaches the workers too; SIGTERM only this process): each worker marks
        # its running trial interrupted before it ends, so --resume runs those points again.
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
        raise


def _run_worker(settings: SearchSettings, quiet: bool = True, child: bool = False) -> None:
    """One worker: optimize until the shared trial count or the time budget is reached."""
    require("optuna")
    if child:
        _exit_with_parent()
        try:
            with signals_as_interrupt():
                _optimize_until_spent(settings, quiet)
        except KeyboardInterrupt:
            pass  # its trial is marked interrupted; the parent reports the stop (no worker traceback)
        return
    _optimize_until_spent(settings, quiet)


def _optimize_until_spent(settings: SearchSettings, quiet: bool) -> None:
    optuna = require("optuna")
    say = (lambda _m: None) if quiet else _log
    study = _load_study(settings, create=False)
    objective = _objective_factory(settings, say)
    trials = settings.trials or 0  # 0: no trial budget

    def stop_at_budget(study: Any, _trial: Any) -> None:
        # Skipped points cost nothing, but a sampler that keeps proposing them must not spin forever.
        if (trials and _spent(study) >= trials) or _skipped(study) > 100 + 10 * trials:
            study.stop()

    callbacks = [stop_at_budget]
    remaining = None
    if settings.deadline:
        remaining = max(1.0, settings.deadline - time.time())
    while not (trials and _spent(study) >= trials):
        try:
            # No n_trials: Optuna would count the queued references too; the callback stops at the budget.
            study.optimize(objective, n_trials=None, timeout=remaining, callbacks=callbacks,
                           catch=(Exception,))
            return
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError) as exc:
            if isinstance(exc, ValueError) and not str(exc).startswith("Cannot tell a"):
                raise
            # Another process closed this trial first (a --resume that took its process for gone):
            # its files stay in the trial folder, and the study goes on with the next trial.
            say("a trial was closed by another process meanwhile; going on with the next")
            if settings.deadline:
                remaining = settings.deadline - time.time()
                if remaining <= 0:
                    return


def _log(message: str) -> None:
    from slimkit.ui import console

    console.log(message)
