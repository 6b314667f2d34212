"""Intermediate features: depth-based pairing and learned adapters (recording: :mod:`slimkit.kernels.hooks`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from slimkit.core.data import Inputs
from slimkit.errors import UsageError
from slimkit.kernels.hooks import Recorder, trace_calls

_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


@torch.no_grad()
def candidate_layers(model: nn.Module, inputs: Inputs) -> list[tuple[str, tuple[int, ...]]]:
    """Conv/linear layers run exactly once per forward, in execution order, without the output head."""
    was_training = model.training
    model.eval()
    with trace_calls(model, lambda _n, m: isinstance(m, _LAYERS)) as calls:
        model(**inputs)
    model.train(was_training)
    order = [(c.name, c.shape) for c in calls if c.shape is not None]
    counts: dict[str, int] = {}
    for n, _ in order:
        counts[n] = counts.get(n, 0) + 1
    seen, out = set(), []
    for n, shape in order:
        if counts[n] == 1 and n not in seen:
            seen.add(n)
            out.append((n, shape))
    return out[:-1]  # the last layer produces the logits: KD already matches those


def auto_pairs(teacher: nn.Module, t_inputs: Inputs, student: nn.Module, s_inputs: Inputs, count: int,
               spatial_only: bool = False) -> list[tuple[str, str]]:
    """``count`` (teacher, student) layer pairs at matching relative depths (1/(k+1), 2/(k+1), ...).

    Example:
        >>> t = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Conv2d(4, 4, 3), nn.Conv2d(4, 4, 3),
        ...                   nn.Flatten(), nn.LazyLinear(2))
        >>> s = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3), nn.Flatten(), nn.LazyLinear(2))
        >>> auto_pairs(t, {"input": torch.zeros(1, 1, 9, 9)}, s, {"input": torch.zeros(1, 1, 9, 9)}, 1)
        [('1', '0')]
    """
    t_layers = candidate_layers(teacher, t_inputs)
    s_layers = candidate_layers(student, s_inputs)
    if spatial_only:
        t_layers = [x for x in t_layers if len(x[1]) == 4]
        s_layers = [x for x in s_layers if len(x[1]) == 4]
    if not t_layers or not s_layers:
        raise UsageError("found no intermediate conv/linear layers to pair",
                         hint="name pairs explicitly as teacher.layer=student.layer")
    pairs = []
    for i in range(1, count + 1):
        depth = i / (count + 1)
        t = t_layers[round(depth * (len(t_layers) - 1))][0]
        s = s_layers[round(depth * (len(s_layers) - 1))][0]
        if (t, s) not in pairs:
            pairs.append((t, s))
    return pairs


class Adapter(nn.Module):
    """Maps a student feature onto a teacher feature's channels (1x1 conv or linear) and size."""

    def __init__(self, s_shape: tuple[int, ...], t_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.spatial = len(s_shape) == 4 and len(t_shape) == 4
        self.t_size = tuple(t_shape[2:]) if self.spatial else None
        if self.spatial:
            self.proj: nn.Module = nn.Conv2d(s_shape[1], t_shape[1], kernel_size=1)
        else:
            self.proj = nn.Linear(s_shape[1], t_shape[1])

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        if self.spatial:
            y = self.proj(s)
            if tuple(y.shape[-2:]) != self.t_size:
                y = F.interpolate(y, size=self.t_size, mode="bilinear", align_corners=False)
            return y
        if s.dim() == 4:
            s = s.mean(dim=(2, 3))
        return self.proj(s.flatten(1))


@torch.no_grad()
def layer_shapes(model: nn.Module, inputs: Inputs, names: list[str]) -> dict[str, tuple[int, ...]]:
    was_training = model.training
    with Recorder(model, names) as rec:
        model.eval()
        try:
            model(**inputs)
        finally:
            model.train(was_training)
    return {n: tuple(t.shape) for n, t in rec.outputs.items()}
