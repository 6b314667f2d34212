"""Intermediate features: forward-hook recording, depth-based pairing, learned adapters."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from slimkit.core.data import Inputs
from slimkit.errors import UsageError

_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


class Recorder:
    """Keeps the latest output of named submodules through forward hooks."""

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        modules = dict(model.named_modules())
        missing = [n for n in names if n not in modules]
        if missing:
            raise UsageError(f"no layer named {', '.join(missing)} in {type(model).__name__}",
                             hint="layer names are those of model.named_modules(), e.g. 'layer2.0.conv1'")
        self.outputs: dict[str, torch.Tensor] = {}
        self._handles = [modules[n].register_forward_hook(self._hook(n)) for n in names]

    def _hook(self, name: str):  # noqa: ANN202
        def hook(_m: nn.Module, _i: object, out: object) -> None:
            if isinstance(out, torch.Tensor):
                self.outputs[name] = out
        return hook

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


@contextmanager
def _trace(model: nn.Module) -> Iterator[list[tuple[str, tuple[int, ...]]]]:
    """Record (name, output shape) of every conv/linear layer in execution order."""
    order: list[tuple[str, tuple[int, ...]]] = []
    handles = []
    for name, m in model.named_modules():
        if isinstance(m, _LAYERS):
            handles.append(m.register_forward_hook(
                lambda _m, _i, out, n=name: order.append((n, tuple(out.shape))) if torch.is_tensor(out) else None))
    try:
        yield order
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def candidate_layers(model: nn.Module, inputs: Inputs) -> list[tuple[str, tuple[int, ...]]]:
    """Conv/linear layers run exactly once per forward, in execution order, without the output head."""
    was_training = model.training
    model.eval()
    with _trace(model) as order:
        model(**inputs)
    model.train(was_training)
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
    rec = Recorder(model, names)
    was_training = model.training
    model.eval()
    try:
        model(**inputs)
    finally:
        rec.remove()
        model.train(was_training)
    return {n: tuple(t.shape) for n, t in rec.outputs.items()}
