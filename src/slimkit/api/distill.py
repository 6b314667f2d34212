"""``slimkit distill``: distill a task's model (teacher) into a smaller student; measure both."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from slimkit.api.train import fresh_model
from slimkit.core.data import Batches
from slimkit.core.files import atomic_path, atomic_write_json
from slimkit.core.task import Task
from slimkit.errors import TaskError, UsageError
from slimkit.pipeline import (
    Progress,
    Run,
    check_threads,
    refusal_leaves_no_folder,
)
from slimkit.report.schema import Report
from slimkit.tasks import load_task
from slimkit.techniques.distill import DistillConfig, DistillResult, distill_model
from slimkit.train.engine import TrainConfig, evaluate_torch, fit


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
    label_fraction: float = 1.0,
    alone: bool = True,
    precision: str = "fp32",
    threads: int | None = None,
    max_drop: float | None = None,
    quick: bool = False,
    seed: int = 0,
    progress: Progress | None = None,
) -> Report:
    """Distill ``task``'s model into ``student``; report teacher (baseline), distilled student and,
    with ``alone``, the same student trained on the labels only.

    ``label_fraction`` keeps hard labels for that share of the training set; the distilled
    student still sees every training image through the teacher's soft targets.

    Example:
        >>> import tempfile
        >>> r = distill("digits-cnn", "digits-cnn", out=tempfile.mkdtemp(), quick=True,
        ...             config=DistillConfig(epochs=1), alone=False)
        >>> [e.id for e in r.candidates]
        ['distilled']
    """
    cfg = _check_args(config, label_fraction, alone, seed)
    check_threads(threads)
    run = Run.open("distill", task, out, threads=threads, quick=quick, seed=seed, progress=progress)
    torch.set_num_threads(run.threads)
    teacher_task = run.task
    teacher = teacher_task.build_model()
    student_model, student_task = resolve_student(student, teacher_task, seed)
    init = copy.deepcopy(student_model.state_dict())
    s_train, t_train = student_task.train_data, teacher_task.train_data
    if not isinstance(s_train, Batches) or not isinstance(t_train, Batches):
        raise UsageError("distill needs tasks whose train_data is slimkit.Batches")
    labelled = max(1, round(label_fraction * s_train.num_items))
    train_cfg = TrainConfig(precision=precision)
    run.say(f"distilling {teacher_task.name} -> "
            f"{student_task.name if student_task is not teacher_task else 'student'} "
            f"({cfg.epochs} epochs, {labelled}/{s_train.num_items} labelled)")
    result = distill_model(teacher, student_model, s_train, cfg, student_task.loss,
                           teacher_data=None if student_task is teacher_task else t_train, labelled=labelled,
                           # distill_model only hands eval_data on to fit, which reads any Iterable[Batch];
                           # its Batches annotation is narrower than what it accepts.
                           eval_data=cast(Batches, student_task.eval_data), metric=student_task.metric,
                           train_config=train_cfg)
    summary = _summary(cfg, result, student_task, label_fraction, labelled)
    models = {"distilled": result.student}
    if alone:
        run.say("training the same student on the labels alone")
        lone, summary["alone"] = _train_alone(result.student, init, s_train, labelled, cfg, student_task, precision)
        models["alone"] = lone
    _write_outputs(run.out, result.student, summary)
    _measure(run, teacher, models, cfg, labelled, student_task)
    student_name = student if isinstance(student, str) else None
    return run.finish(teacher_task.tolerance if max_drop is None else max_drop,
                      record={"student": student_name, "label_fraction": label_fraction, "alone": alone,
                              "precision": precision})


def _check_args(config: DistillConfig | None, label_fraction: float, alone: bool, seed: int) -> DistillConfig:
    """The distillation config, once the label fraction makes sense with it."""
    if not 0.0 < label_fraction <= 1.0:
        raise UsageError(f"label fraction must be in (0, 1], got {label_fraction}")
    cfg = config or DistillConfig(seed=seed)
    if label_fraction < 1.0 and cfg.alpha == 1.0 and not alone:
        # alpha 1 gives the hard labels no weight: the fraction would change nothing that is reported.
        raise UsageError(f"label fraction {label_fraction} has no effect with alpha 1 (soft targets only) and no "
                         "student-alone run", hint="lower alpha so the labels count, or keep the alone run")
    return cfg


def _summary(cfg: DistillConfig, result: DistillResult, student_task: Task, label_fraction: float,
             labelled: int) -> dict[str, Any]:
    """distill.json: the settings, the layer pairs and the distilled student's metric and history."""
    precision = result.train.precision
    assert precision is not None  # fit records the precision it trained in
    return {"config": cfg.to_dict(), "label_fraction": label_fraction, "labelled": labelled,
            "pairs": [list(p) for p in result.pairs], "precision": precision.to_dict(),
            "distilled": {"metric": evaluate_torch(result.student, student_task.eval_data, student_task.metric),
                          "history": result.train.history}}


def _train_alone(student: nn.Module, init: dict[str, torch.Tensor], s_train: Batches, labelled: int,
                 cfg: DistillConfig, student_task: Task, precision: str) -> tuple[nn.Module, dict[str, Any]]:
    """The same student from the same initial weights, trained on the labelled items alone."""
    lone = copy.deepcopy(student)
    lone.load_state_dict(init)
    lone.train()
    labels_only = Batches({k: v[:labelled] for k, v in s_train.inputs.items()}, s_train.targets[:labelled],
                          cfg.batch_size or s_train.batch_size, True, s_train.seed)
    # The same number of optimizer steps as the distilled student (its epochs cover every image).
    epochs_alone = max(1, round(cfg.epochs * len(s_train) / max(1, len(labels_only))))
    fit(lone, labels_only, student_task.loss,
        TrainConfig(epochs=epochs_alone, lr=cfg.lr, seed=cfg.seed, precision=precision))
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
