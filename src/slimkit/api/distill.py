"""``slimkit distill``: distill a task's model (teacher) into a smaller student; measure both."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimkit.api.train import fresh_model
from slimkit.core.data import Batches
from slimkit.core.files import atomic_path, atomic_write_json
from slimkit.core.task import Task
from slimkit.core.technique import StepState
from slimkit.errors import TaskError, UsageError
from slimkit.pipeline import (
    Progress,
    Recipe,
    Run,
    check_threads,
    refusal_leaves_no_folder,
)
from slimkit.pipeline.recipe import apply_steps
from slimkit.report.schema import Report
from slimkit.tasks import load_task
from slimkit.techniques.distill import DistillConfig, DistillResult
from slimkit.train.engine import TrainConfig, evaluate_torch, fit
from slimkit.train.rates import learning_rate


def _load_module_fn(spec: str) -> object:
    from slimkit.tasks._loader import call_user_function

    return call_user_function(spec, "student")


def resolve_student(student: str | nn.Module | Task, teacher_task: Task, seed: int) -> tuple[nn.Module, Task]:
    """The student model (freshly initialized when it comes from a task) and the task whose data it reads.

    A built-in task name gives that task's architecture on that task's inputs (its data must
    be the teacher's items in the same order); ``path.py:function`` returning an nn.Module
    reads the teacher's inputs; a ``path.py:function`` returning a Task works like a name.
    """
    obj: object = student
    if isinstance(student, str) and ":" in student and student.split(":")[0].endswith(".py"):
        obj = _load_module_fn(student)
    elif isinstance(student, str):
        obj = load_task(student, seed=seed)
    if isinstance(obj, Task):
        return fresh_model(obj, seed), obj
    if isinstance(obj, nn.Module):
        return copy.deepcopy(obj).train(), teacher_task
    raise TaskError(f"student {student!r} is neither a task nor an nn.Module",
                    hint="give a task name, a path.py:function returning nn.Module or Task, or a module")


@refusal_leaves_no_folder
def distill(
    task: str | Task = "digits-resnet18",
    student: str | nn.Module | Task = "digits-cnn",
    *,
    out: str | Path = "runs/distill",
    config: DistillConfig | None = None,
    label_fraction: float | None = None,
    alone: bool = True,
    precision: str | None = None,
    threads: int | None = None,
    max_drop: float | None = None,
    quick: bool = False,
    seed: int = 0,
    progress: Progress | None = None,
) -> Report:
    """Distill ``task``'s model into ``student``; report teacher (baseline), distilled student and,
    with ``alone``, the same student trained on the labels only.

    ``label_fraction`` keeps hard labels for that share of the training set; the distilled
    student still sees every training image through the teacher's soft targets. It and
    ``precision`` (of training) override ``config``'s when given.

    Example:
        >>> import tempfile
        >>> r = distill("digits-cnn", "digits-cnn", out=tempfile.mkdtemp(), quick=True,
        ...             config=DistillConfig(epochs=1), alone=False)
        >>> [e.id for e in r.candidates]
        ['distilled']
    """
    cfg = _check_args(config, label_fraction, precision, alone, seed)
    check_threads(threads)
    run = Run.open("distill", task, out, threads=threads, quick=quick, seed=seed, progress=progress)
    torch.set_num_threads(run.threads)
    teacher_task = run.task
    teacher = teacher_task.build_model()
    student_model, student_task = resolve_student(student, teacher_task, seed)
    init = copy.deepcopy(student_model.state_dict())
    s_train = student_task.train_data
    if not isinstance(s_train, Batches) or not isinstance(teacher_task.train_data, Batches):
        raise UsageError("distill needs tasks whose train_data is slimkit.Batches")
    labelled = max(1, round(cfg.label_fraction * s_train.num_items))
    run.say(f"distilling {teacher_task.name} -> "
            f"{student_task.name if student_task is not teacher_task else 'student'} "
            f"({cfg.epochs} epochs, {labelled}/{s_train.num_items} labelled)")
    # The one distill step, through the pipeline like every recipe's: the student is the model the
    # step starts from, the task's model its teacher (on inputs of its own when the tasks differ).
    state = apply_steps(StepState(student_task, student_model, "torch", run.out, run.threads, teacher=teacher,
                                  teacher_task=teacher_task, progress=run.say, history=True), Recipe((cfg,)))
    result: DistillResult = state.results["distill"]
    summary = _summary(cfg, result, student_task, labelled)
    models = {"distilled": result.student}
    if alone:
        run.say("training the same student on the labels alone")
        lone, summary["alone"] = _train_alone(result.student, init, s_train, labelled, cfg, student_task)
        models["alone"] = lone
    _write_outputs(run.out, result.student, summary)
    _measure(run, teacher, models, cfg, labelled, student_task)
    student_name = student if isinstance(student, str) else None
    return run.finish(max_drop,
                      record={"student": student_name, "alone": alone})


def _check_args(config: DistillConfig | None, label_fraction: float | None, precision: str | None, alone: bool,
                seed: int) -> DistillConfig:
    """The distillation config with the label fraction and precision asked for, once they make sense."""
    cfg = config or DistillConfig(seed=seed)
    if label_fraction is not None:
        if not 0.0 < label_fraction <= 1.0:
            raise UsageError(f"label fraction must be in (0, 1], got {label_fraction}")
        cfg = dataclasses.replace(cfg, label_fraction=label_fraction)
    if precision is not None:
        cfg = dataclasses.replace(cfg, precision=precision)
    if cfg.label_fraction < 1.0 and cfg.alpha == 1.0 and not alone:
        # alpha 1 gives the hard labels no weight: the fraction would change nothing that is reported.
        raise UsageError(f"label fraction {cfg.label_fraction} has no effect with alpha 1 (soft targets only) and "
                         "no student-alone run", hint="lower alpha so the labels count, or keep the alone run")
    return cfg


def _summary(cfg: DistillConfig, result: DistillResult, student_task: Task, labelled: int) -> dict[str, Any]:
    """distill.json: the settings, the layer pairs and the distilled student's metric and history."""
    precision = result.train.precision
    assert precision is not None  # fit records the precision it trained in
    return {"config": cfg.to_dict(), "label_fraction": cfg.label_fraction, "labelled": labelled,
            "pairs": [list(p) for p in result.pairs], "precision": precision.to_dict(),
            "distilled": {"metric": evaluate_torch(result.student, student_task.eval_data, student_task.metric),
                          "history": result.train.history}}


def _train_alone(student: nn.Module, init: dict[str, torch.Tensor], s_train: Batches, labelled: int,
                 cfg: DistillConfig, student_task: Task) -> tuple[nn.Module, dict[str, Any]]:
    """The same student from the same initial weights, trained on the labelled items alone."""
    lone = copy.deepcopy(student)
    lone.load_state_dict(init)
    lone.train()
    labels_only = Batches({k: v[:labelled] for k, v in s_train.inputs.items()}, s_train.targets[:labelled],
                          cfg.batch_size or s_train.batch_size, True, s_train.seed)
    # The same number of optimizer steps as the distilled student (its epochs cover every image).
    epochs_alone = max(1, round(cfg.epochs * len(s_train) / max(1, len(labels_only))))
    lr = learning_rate(lone, "student", cfg.lr)
    fit(lone, labels_only, student_task.loss,
        TrainConfig(epochs=epochs_alone, lr=lr, seed=cfg.seed, precision=cfg.precision))
    return lone, {"epochs": epochs_alone, "metric": evaluate_torch(lone, student_task.eval_data, student_task.metric)}


def _measure(run: Run, teacher: nn.Module, models: dict[str, nn.Module], cfg: DistillConfig, labelled: int,
             student_task: Task) -> None:
    """The teacher as the baseline, then each student, each with the recipe that made it."""
    run.measure_baseline(teacher, folder="teacher")
    for name, model in models.items():
        run.say(f"measuring the {name} student")
        recipe = [cfg.to_dict()] if name == "distilled" else [{"type": "train", "version": 1,
                                                              "data": {"labelled": labelled}}]
        run.measure(model, "torch", name, recipe, task=student_task)
    run.steps, run.targets = [cfg.to_dict()], ["torch"]


def _write_outputs(out_dir: Path, student: nn.Module, summary: dict[str, Any]) -> None:
    """student.safetensors (the distilled weights) and distill.json."""
    from safetensors.torch import save_file

    with atomic_path(out_dir / "student.safetensors") as tmp:
        save_file({k: v.detach().contiguous() for k, v in student.state_dict().items()}, str(tmp))
    atomic_write_json(out_dir / "distill.json", summary)
