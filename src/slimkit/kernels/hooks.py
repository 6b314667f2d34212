"""Forward hooks that are always removed: a register-and-remove context, an output recorder by
module name and a call-order tracer.

A hook left behind keeps running on every later forward (and keeps its tensors alive); a fuse
step even refuses to fold a module that carries one. So every hook here is removed on leaving
its ``with`` block, whether the forward inside returned or raised.

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> with trace_calls(net, lambda _name, m: isinstance(m, nn.Linear)) as calls:
    ...     _ = net(torch.zeros(5, 3))
    >>> [(c.name, c.shape) for c in calls]
    [('0', (5, 4)), ('2', (5, 2))]
    >>> any(m._forward_hooks for m in net.modules())
    False
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from slimkit.errors import UsageError

_H = TypeVar("_H", bound="Hooks")


class Hooks:
    """Forward hooks and pre-hooks registered together and removed together.

    Use it as a context manager (removal on leaving the block, also when the forward raises),
    or call :meth:`remove` where the hooks must outlive one block.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> lin, seen = nn.Linear(2, 2), []
        >>> with Hooks() as hooks:
        ...     hooks.pre(lin, lambda _m, args: seen.append(tuple(args[0].shape)))
        ...     _ = lin(torch.zeros(3, 2))
        >>> seen, len(lin._forward_pre_hooks)
        ([(3, 2)], 0)
    """

    def __init__(self) -> None:
        self._handles: list[RemovableHandle] = []

    def forward(self, module: nn.Module, hook: Callable[..., object]) -> None:
        """``hook(module, args, output)`` after each call of ``module``."""
        self._handles.append(module.register_forward_hook(hook))

    def pre(self, module: nn.Module, hook: Callable[..., object], *, with_kwargs: bool = False) -> None:
        """``hook(module, args)`` (``hook(module, args, kwargs)`` with ``with_kwargs``) before each call."""
        self._handles.append(module.register_forward_pre_hook(hook, with_kwargs=with_kwargs))

    def remove(self) -> None:
        """Remove every hook registered so far (a second call does nothing)."""
        while self._handles:
            self._handles.pop().remove()

    def __len__(self) -> int:
        return len(self._handles)

    def __enter__(self: _H) -> _H:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.remove()


class Recorder(Hooks):
    """The latest tensor output of each named submodule of ``model`` (``model.named_modules()`` names).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
        >>> with Recorder(net, ["0", "1"]) as rec:
        ...     _ = net(torch.ones(2, 3))
        >>> sorted(rec.outputs), bool((rec.outputs["1"] >= 0).all())
        (['0', '1'], True)
    """

    def __init__(self, model: nn.Module, names: Iterable[str]) -> None:
        super().__init__()
        modules = dict(model.named_modules())
        names = list(names)
        missing = [n for n in names if n not in modules]
        if missing:
            raise UsageError(f"no layer named {', '.join(missing)} in {type(model).__name__}",
                             hint="layer names are those of model.named_modules(), e.g. 'layer2.0.conv1'")
        self.outputs: dict[str, torch.Tensor] = {}
        for name in names:
            self.forward(modules[name], self._keep(name))

    def _keep(self, name: str) -> Callable[[nn.Module, object, object], None]:
        def hook(_m: nn.Module, _args: object, out: object) -> None:
            if isinstance(out, torch.Tensor):
                self.outputs[name] = out
        return hook


@dataclass(frozen=True)
class Call:
    """One call of a traced module: its name, the module and its output shape (None: not a tensor)."""

    name: str
    module: nn.Module
    shape: tuple[int, ...] | None


@contextmanager
def trace_calls(model: nn.Module, select: Callable[[str, nn.Module], bool]) -> Iterator[list[Call]]:
    """Every call of the submodules ``select(name, module)`` picks, in execution order, while the block runs.

    A module called twice appears twice, so callers can also count calls.
    """
    calls: list[Call] = []

    def on(name: str) -> Callable[[nn.Module, object, object], None]:
        def hook(module: nn.Module, _args: object, out: object) -> None:
            calls.append(Call(name, module, tuple(out.shape) if isinstance(out, torch.Tensor) else None))
        return hook

    with Hooks() as hooks:
        for name, module in model.named_modules():
            if select(name, module):
                hooks.forward(module, on(name))
        yield calls
