"""The training-time wrapper that makes distillation one more call of the engine's ``fit``.

:class:`Distiller` holds the student and the adapters (trained), and the teacher (frozen, in
eval mode, outside the module tree so it is neither optimized, checkpointed nor switched to
train mode). Its forward runs both models and leaves what the loss needs in a stash.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from slimkit.core.data import Batches, Inputs, primary_output
from slimkit.core.task import call_model
from slimkit.kernels.teacher import TeacherStudent
from slimkit.techniques.distill._config import DistillConfig
from slimkit.techniques.distill._features import Adapter, auto_pairs, layer_shapes
from slimkit.train.losses import attention_loss, feature_loss, hard_loss, kd_loss

TEACHER_PREFIX = "teacher."
INDEX = "index"


class _Stash(dict):
    """Per-step teacher outputs; shared by copies (the precision probe deep-copies the model)."""

    def __deepcopy__(self, memo: dict) -> _Stash:
        return self


def _split(inputs: Inputs) -> tuple[Inputs, Inputs | None, torch.Tensor | None]:
    s = {k: v for k, v in inputs.items() if not k.startswith(TEACHER_PREFIX) and k != INDEX}
    t = {k[len(TEACHER_PREFIX):]: v for k, v in inputs.items() if k.startswith(TEACHER_PREFIX)}
    return s, (t or None), inputs.get(INDEX)


class Distiller(TeacherStudent):
    """Student + adapters, with the teacher alongside (a frozen copy); ``loss`` is the combined
    distillation loss. :meth:`remove` takes the feature hooks off the student after training."""

    def __init__(self, teacher: nn.Module, student: nn.Module, cfg: DistillConfig,
                 task_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 example: Inputs, teacher_example: Inputs | None = None) -> None:
        super().__init__(student, teacher, copy_teacher=True)
        frozen = self.teacher
        self.cfg, self.task_loss = cfg, task_loss
        self.stash = _Stash()
        self.cache: torch.Tensor | None = None
        t_example = teacher_example if teacher_example is not None else example
        self.adapters = nn.ModuleDict()
        if cfg.needs_features:
            pairs = ([(t, s) for t, s in (p.split("=") for p in cfg.pairs)] if cfg.pairs else
                     auto_pairs(frozen, t_example, student, example, cfg.auto_pairs,
                                spatial_only=cfg.attention_weight > 0 and cfg.feature_weight == 0))
            t_shapes = layer_shapes(frozen, t_example, [t for t, _ in pairs])
            s_shapes = layer_shapes(student, example, [s for _, s in pairs])
            if cfg.feature_weight > 0:
                for i, (t, s) in enumerate(pairs):
                    self.adapters[str(i)] = Adapter(s_shapes[s], t_shapes[t])
            self.record(pairs)

    @torch.no_grad()
    def cache_teacher(self, data: Batches) -> None:
        """Teacher logits for every training item, looked up by the ``index`` input."""
        outs = []
        for inputs, _ in data.subset(data.num_items, 256):  # unshuffled, in index order
            s, t, _ = _split(inputs)
            outs.append(primary_output(self.teacher(**(t if t is not None else s))).float())
        self.cache = torch.cat(outs)

    def forward(self, **inputs: torch.Tensor) -> Any:
        s_in, t_in, index = _split(inputs)
        out = call_model(self.student, s_in)  # an error names the student and its inputs, not this wrapper's
        if not self.training:
            return out
        if self.cache is not None and index is not None and not self.cfg.needs_features:
            t_logits = self.cache[index.to(self.cache.device)]
        else:
            t_logits = primary_output(self.teacher_output(t_in if t_in is not None else s_in))
        self.stash["teacher"] = t_logits
        if self.pairs:
            self.stash["t_feats"] = self.teacher_features()
            self.stash["s_feats"] = self.student_features()
        return out

    def terms(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each loss term of the last training forward (unweighted)."""
        cfg = self.cfg
        out = {"kd": kd_loss(outputs, self.stash["teacher"], cfg.temperature),
               "hard": hard_loss(self.task_loss, outputs, targets)}
        if self.pairs:
            pairs = list(zip(self.stash["s_feats"], self.stash["t_feats"], strict=True))
            if cfg.feature_weight > 0:
                out["feature"] = torch.stack([feature_loss(self.adapters[str(i)](s), t)
                                              for i, (s, t) in enumerate(pairs)]).mean()
            if cfg.attention_weight > 0:
                spatial = [(s, t) for s, t in pairs if s.dim() == 4 and t.dim() == 4]
                if spatial:
                    out["attention"] = torch.stack([attention_loss(s, t) for s, t in spatial]).mean()
        return out

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        t = self.terms(outputs, targets)
        cfg = self.cfg
        total = cfg.alpha * t["kd"] + (1.0 - cfg.alpha) * t["hard"]
        if "feature" in t:
            total = total + cfg.feature_weight * t["feature"]
        if "attention" in t:
            total = total + cfg.attention_weight * t["attention"]
        return total


def paired_batches(student: Batches, teacher: Batches | None, labelled: int | None = None) -> Batches:
    """One data set carrying the student's inputs, the teacher's (``teacher.*``) when they differ,
    and each item's ``index`` (for cached teacher logits); targets past ``labelled`` become -100
    (unlabelled: only the teacher's soft targets teach them)."""
    inputs = dict(student.inputs)
    if teacher is not None:
        if teacher.num_items != student.num_items or not torch.equal(teacher.targets, student.targets):
            from slimkit.errors import UsageError

            raise UsageError("teacher and student data are not the same items in the same order",
                             hint="use two tasks built on the same split (e.g. digits-resnet18 and digits-cnn)")
        inputs.update({TEACHER_PREFIX + k: v for k, v in teacher.inputs.items()})
    inputs[INDEX] = torch.arange(student.num_items)
    targets = student.targets.clone()
    if labelled is not None and labelled < student.num_items:
        targets[labelled:] = -100
    return Batches(inputs, targets, student.batch_size, student.shuffle, student.seed, student.drop_last)
