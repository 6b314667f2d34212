"""``slimkit tune``: hyperparameter search for training, with Optuna samplers and pruners.

The space is YAML: each key is a :class:`~slimkit.train.engine.TrainConfig` field, and each
value is a list of choices or a range::

    lr: {low: 1.0e-4, high: 1.0e-1, log: true}
    weight_decay: {low: 0.0, high: 1.0e-3}
    batch_size: [16, 32, 64]
    epochs: {low: 2, high: 8, step: 1}
    optimizer: [sgd, adamw]

Trials are scored on a validation split carved from the training data (the last 20%), never
on the evaluation set, which the final model is then measured on once.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimkit._optional import require
from slimkit.core.data import Batches
from slimkit.core.files import atomic_write_json, atomic_write_text, read_mapping
from slimkit.core.task import Task
from slimkit.errors import SlimkitError, UsageError
from slimkit.pipeline import check_seed, check_threads, claim_out, refusal_leaves_no_folder
from slimkit.search.study import PRUNERS, SAMPLERS, make_pruner
from slimkit.tasks import load_task
from slimkit.train.engine import TrainConfig, evaluate_torch, fit


def load_space(path: str | Path) -> dict[str, Any]:
    """Read and check a tuning space file (YAML or JSON)."""
    return check_space(read_mapping(path, "space", hint="give a YAML file of TrainConfig fields"))


# TrainConfig fields that are not hyperparameters of the training (bookkeeping, or early stopping,
# which tune does not run: it scores every trial on its own validation split).
_NOT_TUNABLE = {"seed", "precision_cache", "checkpoint_dir", "checkpoint_every", "resume", "device", "patience",
                "min_delta", "restore_best"}


def check_space(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, Mapping) or not raw:
        raise UsageError("the tuning space must be a non-empty mapping of TrainConfig fields")
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - _NOT_TUNABLE
    unknown = sorted(set(raw) - fields)
    if unknown:
        raise UsageError(f"unknown hyperparameter(s): {', '.join(unknown)}",
                         hint=f"tunable TrainConfig fields: {', '.join(sorted(fields))}")
    for name, spec in raw.items():
        if isinstance(spec, Mapping) and set(spec) - {"low", "high", "log", "step"}:
            _range_ends(name, spec)  # names the misspelled key
        ok = (isinstance(spec, list) and spec) or (isinstance(spec, Mapping) and {"low", "high"} <= set(spec))
        if not ok:
            raise UsageError(f"hyperparameter '{name}': give a list of choices or {{low, high[, log, step]}}")
        for value in _range_ends(name, spec) if isinstance(spec, Mapping) else spec:
            _check_value(name, value)
    return dict(raw)


def _whole_number(name: str) -> bool:
    """Whether TrainConfig's field ``name`` is an int (epochs, batch_size, accumulate, ...)."""
    return str({f.name: f.type for f in dataclasses.fields(TrainConfig)}.get(name, "")).startswith("int")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _range_ends(name: str, spec: Mapping[str, Any]) -> tuple[Any, Any]:
    """The two ends of a {low, high[, log, step]} range, checked as Optuna will need them."""
    extra = sorted(set(spec) - {"low", "high", "log", "step"})
    if extra:
        raise UsageError(f"hyperparameter '{name}': unknown range key(s) {', '.join(extra)}",
                         hint="a range is {low, high[, log, step]}")
    low, high, step = spec["low"], spec["high"], spec.get("step")
    if not (_is_number(low) and _is_number(high)):
        raise UsageError(f"hyperparameter '{name}': low and high must be numbers, got {low!r} and {high!r}")
    if low > high:
        raise UsageError(f"hyperparameter '{name}': low {low} is above high {high}")
    if spec.get("log") and low <= 0:
        raise UsageError(f"hyperparameter '{name}': a log range needs low > 0, got {low}")
    if step is not None and (not _is_number(step) or step <= 0):
        raise UsageError(f"hyperparameter '{name}': step must be a number > 0, got {step!r}")
    if step is not None and spec.get("log"):
        raise UsageError(f"hyperparameter '{name}': a range is either log-scaled or stepped, not both",
                         hint="drop log or step")
    if _whole_number(name) and not all(isinstance(v, int) for v in (low, high, step or 1)):
        raise UsageError(f"hyperparameter '{name}' is a whole number; the range {low}..{high} is not",
                         hint=f"e.g. {name}: {{low: 1, high: 4}}")
    return low, high


def _check_value(name: str, value: Any) -> None:
    """A value the training engine accepts for ``name`` (checked now, not as a failed trial later)."""
    if _whole_number(name) and value is not None and not (isinstance(value, int) and not isinstance(value, bool)):
        raise UsageError(f"hyperparameter '{name}' is a whole number, got {value!r}",
                         hint=f"write it without a decimal point, e.g. {name}: [1, 2]")
    if name == "epochs" and _is_number(value) and value < 1:
        raise UsageError(f"hyperparameter 'epochs': {value} trains nothing", hint="tune epochs of 1 or more")
    try:
        dataclasses.replace(TrainConfig(), **{name: value})
    except TypeError:
        raise UsageError(f"hyperparameter '{name}': {value!r} is not a valid value") from None
    except SlimkitError as err:
        raise UsageError(f"hyperparameter '{name}': {err.message}", hint=err.hint) from None


def _choices(space: Mapping[str, Any], base: TrainConfig, name: str) -> set[Any]:
    spec = space.get(name)
    return set(spec) if isinstance(spec, list) else {getattr(base, name)}


def _check_effect(space: Mapping[str, Any], base: TrainConfig, model: nn.Module) -> None:
    """Hyperparameters that cannot change this training are refused: their trials scored alike and
    the winner's value was reported as tuned."""
    why = []
    if "momentum" in space and "sgd" not in _choices(space, base, "optimizer"):
        why.append("momentum applies to the sgd optimizer (AdamW is used): add optimizer: [sgd]")
    if {"gamma", "step_epochs"} & set(space) and "step" not in _choices(space, base, "schedule"):
        why.append("gamma and step_epochs apply to the step schedule: add schedule: [step]")
    if "dropout" in space and not any(isinstance(m, nn.modules.dropout._DropoutNd) for m in model.modules()):
        why.append("dropout sets the rate of the model's Dropout layers, and this model has none")
    if why:
        raise UsageError("hyperparameter(s) with no effect on this training: " + "; ".join(why),
                         hint="drop them from the space, or add what makes them matter")


def _suggest(trial: Any, space: Mapping[str, Any]) -> dict[str, Any]:
    params = {}
    for name, spec in space.items():
        if isinstance(spec, list):
            params[name] = trial.suggest_categorical(name, spec)
        elif all(isinstance(spec[k], int) for k in ("low", "high")) and isinstance(spec.get("step", 1), int):
            params[name] = trial.suggest_int(name, spec["low"], spec["high"], step=spec.get("step", 1),
                                             log=bool(spec.get("log", False)))
        else:
            params[name] = trial.suggest_float(name, float(spec["low"]), float(spec["high"]),
                                               log=bool(spec.get("log", False)), step=spec.get("step"))
    return params


@refusal_leaves_no_folder
def tune(
    task: str | Task,
    space: Mapping[str, Any],
    *,
    trials: int = 10,
    sampler: str = "tpe",
    pruner: str = "median",
    base: TrainConfig | None = None,
    out: str | Path = "runs/tune",
    seed: int = 0,
    threads: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Tune training hyperparameters; returns and writes the best ones and the trial table.

    Example:
        >>> import tempfile
        >>> result = tune("digits-cnn", {"lr": {"low": 1e-3, "high": 1e-2, "log": True}, "epochs": [1]},
        ...               trials=2, sampler="random", out=tempfile.mkdtemp())
        >>> sorted(result["best_params"])
        ['epochs', 'lr']
    """
    optuna = require("optuna", "slimkit tune")
    # A failed trial is raised to the caller as one error; Optuna's WARNING log would print its traceback first.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space = check_space(space)
    _check_search(sampler, pruner, trials)
    say = progress or (lambda _m: None)
    check_threads(threads)
    check_seed(seed)
    if threads is not None:
        torch.set_num_threads(threads)
    out_dir = claim_out(out, "tune")
    task_obj = load_task(task, seed=seed)
    _check_effect(space, base or TrainConfig(seed=seed), (task_obj.fresh_model or task_obj.build_model)())
    if not isinstance(task_obj.train_data, Batches):
        raise UsageError(f"task '{task_obj.name}' has no splittable training data (slimkit.Batches)")
    train, val = task_obj.train_data.holdout(0.2)
    base = base or TrainConfig(seed=seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    chosen_sampler = _sampler(optuna, sampler, space, seed)
    trials = _grid_trials(sampler, space, trials, say)
    study = optuna.create_study(direction="maximize", sampler=chosen_sampler, pruner=make_pruner(pruner))
    study.optimize(_objective(optuna, task_obj, space, base, train, val, seed, say), n_trials=trials)
    if not any(t.state.name == "COMPLETE" for t in study.trials):
        raise UsageError("every trial was pruned or failed", hint="widen the space or use --pruner none")
    result = {"task": task_obj.name, "metric": task_obj.metric.name, "sampler": sampler, "pruner": pruner,
              "best_params": study.best_params, "best_validation": study.best_value,
              "eval_metric_of_best": _retrain_best(task_obj, dataclasses.replace(base, **study.best_params),
                                                   train, seed),
              "trials": _trial_rows(study)}
    atomic_write_json(out_dir / "tune.json", result)
    atomic_write_text(out_dir / "best_params.yaml", "".join(f"{k}: {json.dumps(v)}\n"
                                                            for k, v in study.best_params.items()))
    return result


def _check_search(sampler: str, pruner: str, trials: int) -> None:
    if sampler not in SAMPLERS or sampler == "nsga2":
        raise UsageError(f"sampler '{sampler}' cannot tune one objective",
                         hint=f"choose one of: {', '.join(s for s in SAMPLERS if s != 'nsga2')}")
    if pruner not in PRUNERS:
        raise UsageError(f"unknown pruner '{pruner}'", hint=f"choose one of: {', '.join(PRUNERS)}")
    if trials < 1:
        raise UsageError("--trials must be >= 1")


def _objective(optuna: Any, task: Task, space: Mapping[str, Any], base: TrainConfig, train: Batches,
               val: Batches, seed: int, say: Callable[[str], None]) -> Callable[[Any], float]:
    """One trial: train a fresh model with the suggested values, scored on the validation split
    (pruned after an epoch whose score lags the other trials')."""
    make = task.fresh_model or task.build_model

    def objective(trial: Any) -> float:
        params = _suggest(trial, space)
        cfg = dataclasses.replace(base, **params)
        torch.manual_seed(seed)
        model = make()

        def on_epoch(epoch: int, _row: dict[str, float]) -> None:
            score = evaluate_torch(model, val, task.metric)
            model.train()
            trial.report(score, epoch)
            # After the last epoch the trial is done: pruning it then only threw its result away.
            if epoch < cfg.epochs and trial.should_prune():
                say(f"trial {trial.number}: {params} stopped after epoch {epoch} of {cfg.epochs}: validation "
                    f"{task.metric.name} {score:.4g} lags the other trials'")
                raise optuna.TrialPruned(f"validation {task.metric.name} {score:.4g} at epoch {epoch}")

        fit(model, train, task.loss, cfg, on_epoch=on_epoch)
        score = evaluate_torch(model, val, task.metric)
        say(f"trial {trial.number}: {params} -> validation {task.metric.name} {score:.4g}")
        return score

    return objective


def _sampler(optuna: Any, name: str, space: Mapping[str, Any], seed: int) -> Any:
    """The Optuna sampler ``name``; the grid sampler needs a list of choices for every hyperparameter."""
    if name == "grid" and not all(isinstance(v, list) for v in space.values()):
        ranged = ", ".join(k for k, v in space.items() if not isinstance(v, list))
        raise UsageError(f"the grid sampler needs a list of choices for every hyperparameter ({ranged} is a range)",
                         hint="give those as lists, e.g. lr: [0.001, 0.01], or use --sampler tpe/random/gp")
    if name == "grid":
        return optuna.samplers.GridSampler({k: v for k, v in space.items() if isinstance(v, list)}, seed=seed)
    return {"random": optuna.samplers.RandomSampler, "tpe": optuna.samplers.TPESampler,
            "gp": optuna.samplers.GPSampler}[name](seed=seed)


def _grid_trials(sampler: str, space: Mapping[str, Any], trials: int, say: Callable[[str], None]) -> int:
    """No more trials than the grid has points (a grid sampler stops there anyway)."""
    if sampler == "grid":
        points = math.prod(len(v) for v in space.values())
        if trials > points:
            say(f"the grid has {points} point(s): {points} trials, not {trials}")
            return points
    return trials


def _retrain_best(task: Task, cfg: TrainConfig, train: Batches, seed: int) -> float:
    """The winner is retrained once and measured on the held-out evaluation set."""
    torch.manual_seed(seed)
    final = (task.fresh_model or task.build_model)()
    fit(final, train, task.loss, cfg)
    return evaluate_torch(final, task.eval_data, task.metric)


def _trial_rows(study: Any) -> list[dict[str, Any]]:
    """The trial table of tune.json."""
    # Optuna gives a pruned trial its last intermediate value: a score after fewer epochs, kept apart
    # from the finished trials' scores so the two are not read as alike.
    return [{"trial": t.number, "state": t.state.name.lower(), "params": t.params,
             "validation": t.value if t.state.name == "COMPLETE" else None,
             "partial_validation": (t.intermediate_values[max(t.intermediate_values)]
                                    if t.state.name == "PRUNED" and t.intermediate_values else None),
             "epochs_run": len(t.intermediate_values)} for t in study.trials]
