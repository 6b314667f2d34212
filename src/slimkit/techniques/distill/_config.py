"""The distill step's configuration and its versioned JSON form."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from slimkit.core.config import StepConfig
from slimkit.errors import UsageError
from slimkit.train.precision import PRECISIONS


@dataclass(frozen=True)
class DistillConfig(StepConfig):
    """Knowledge distillation from a teacher into a student.

    Loss = ``alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * hard-label loss``
    ``+ feature_weight * feature matching + attention_weight * attention transfer``.
    ``pairs`` name teacher and student layers as ``"teacher.layer=student.layer"``; with none
    given and a feature or attention weight set, ``auto_pairs`` pairs are chosen by relative
    depth. ``cache_teacher`` computes teacher logits once (only when no feature/attention
    term needs live teacher activations).

    Example:
        >>> import json
        >>> cfg = DistillConfig(temperature=2.0, feature_weight=1.0, pairs=["layer2.0.conv1=features.3"])
        >>> DistillConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
        True
    """

    TYPE: ClassVar[str] = "distill"

    temperature: float = 4.0
    alpha: float = 0.9
    feature_weight: float = 0.0
    attention_weight: float = 0.0
    pairs: tuple[str, ...] = ()
    auto_pairs: int = 2
    cache_teacher: bool = True
    epochs: int = 30
    lr: float | None = None  # None: by the student's family (slimkit.train.rates, 'student')
    batch_size: int | None = None
    seed: int = 0
    # Hard labels are kept for this share of the training items (the first ones); the rest teach
    # through the teacher's soft targets only.
    label_fraction: float = 1.0
    precision: str = "fp32"  # the training precision (fp32, bf16, fp16 or auto: measured)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.batch_size is not None and self.batch_size < 1:
            raise UsageError(f"distill batch_size must be >= 1, got {self.batch_size}", hint="or null: the task's")
        if self.epochs < 1:
            raise UsageError(f"distill epochs must be >= 1, got {self.epochs}")
        if self.temperature <= 0:
            raise UsageError(f"distill temperature must be > 0, got {self.temperature}")
        if not 0.0 <= self.alpha <= 1.0:
            raise UsageError(f"distill alpha must be in [0, 1], got {self.alpha}")
        if not 0.0 < self.label_fraction <= 1.0:
            raise UsageError(f"distill label_fraction must be in (0, 1], got {self.label_fraction}")
        if self.precision not in PRECISIONS:
            raise UsageError(f"unknown distill precision '{self.precision}'", hint="use auto, fp32, bf16 or fp16")
        if self.feature_weight < 0 or self.attention_weight < 0:
            raise UsageError("distill feature/attention weights must be >= 0")
        for p in self.pairs:
            if p.count("=") != 1:
                raise UsageError(f"distill pair '{p}' is not 'teacher.layer=student.layer'")
        if self.pairs and not self.needs_features:
            # Pairs only feed the feature and attention losses; accepting them alone did nothing.
            raise UsageError("distill pairs are used by feature matching and attention transfer, and both "
                             "weights are 0", hint="set feature_weight/attention_weight (--feature-weight, "
                             "--attention-weight) or drop the pairs")

    @property
    def needs_features(self) -> bool:
        return self.feature_weight > 0 or self.attention_weight > 0
