"""A student trained next to a frozen teacher: the wrapper that makes distillation one call of ``fit``.

The teacher is held in a list, outside the module tree, so the engine neither optimizes,
checkpoints nor switches it to train mode; it is put in eval mode with gradients off once, and
run without gradients. Named hidden outputs of both models can be recorded on every forward
for feature losses. Each technique subclasses it with its own ``forward`` and loss (the losses
themselves live in :mod:`slimkit.train.losses`).

Example:
    >>> import torch
    >>> from torch import nn
    >>> teacher, student = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)), nn.Sequential(nn.Linear(3, 2))
    >>> pair = TeacherStudent(student, teacher, copy_teacher=True)
    >>> pair.record([("0", "0")])
    >>> with torch.no_grad():
    ...     t_out = pair.teacher_output({"input": torch.zeros(5, 3)})
    ...     s_out = pair.student(torch.zeros(5, 3))
    >>> [tuple(f.shape) for f in pair.teacher_features() + pair.student_features()]
    [(5, 4), (5, 2)]
    >>> pair.teacher is teacher, pair.teacher.training, [n for n, _ in pair.named_parameters()]
    (False, False, ['student.0.weight', 'student.0.bias'])
    >>> pair.remove()
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from slimkit.core.data import Inputs
from slimkit.core.task import call_model
from slimkit.kernels.hooks import Recorder


class TeacherStudent(nn.Module):
    """``student`` (a submodule, trained) with ``teacher`` alongside (frozen, never a submodule).

    With ``copy_teacher`` the wrapper freezes a deep copy, which also follows the student to its
    device; otherwise it freezes the teacher it was given in place and leaves it where it is.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, *, copy_teacher: bool = False) -> None:
        super().__init__()
        self.student = student
        frozen = copy.deepcopy(teacher) if copy_teacher else teacher
        self._teacher = [frozen.eval().requires_grad_(False)]  # a list: not a submodule, never optimized
        self._follows_student = copy_teacher
        self.pairs: list[tuple[str, str]] = []
        self._t_rec = Recorder(frozen, [])
        self._s_rec = Recorder(student, [])

    @property
    def teacher(self) -> nn.Module:
        return self._teacher[0]

    def record(self, pairs: Sequence[tuple[str, str]]) -> None:
        """From now on keep the latest outputs of these (teacher layer, student layer) pairs."""
        self.remove()
        self.pairs = [(t, s) for t, s in pairs]
        self._t_rec = Recorder(self.teacher, [t for t, _ in self.pairs])
        self._s_rec = Recorder(self.student, [s for _, s in self.pairs])

    @torch.no_grad()
    def teacher_output(self, inputs: Inputs) -> Any:
        """The teacher's whole output on ``inputs``, without gradients."""
        if self._follows_student:
            param = next(self.student.parameters(), None)
            if param is not None:
                self.teacher.to(param.device)
        return call_model(self.teacher, inputs)

    def teacher_features(self) -> list[torch.Tensor]:
        """The teacher's recorded output of each pair, in pair order."""
        return [self._t_rec.outputs[t] for t, _ in self.pairs]

    def student_features(self) -> list[torch.Tensor]:
        """The student's recorded output of each pair, in pair order."""
        return [self._s_rec.outputs[s] for _, s in self.pairs]

    def remove(self) -> None:
        """Remove the recording hooks from both models (the student is returned without them)."""
        self._t_rec.remove()
        self._s_rec.remove()
