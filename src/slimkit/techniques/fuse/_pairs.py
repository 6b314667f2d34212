"""Finding (layer, BatchNorm) pairs whose BatchNorm sees only that layer's output.

The pairs are found on the module tree, and the rewrite is done on the module tree too
(see ``_torch.py``); torch.fx is used only to *read* the data flow, never to produce the
returned model. Two sources, from exact to structural:

* **fx**: ``torch.fx.symbolic_trace`` of a module gives its data flow; a pair is a
  BatchNorm call whose sole argument is a Conv/Linear call that has no other user.
* **sequential**: where a module cannot be traced (data-dependent control flow and
  the like), a Conv/Linear directly followed by a BatchNorm inside a plain
  ``nn.Sequential`` is a pair, because a Sequential feeds each child only to the next.
  The untraceable module's children are then traced one by one, so a model with one
  ``if`` in its top-level forward still gets its blocks analysed by fx.

Every candidate is checked again by the caller against the whole model (shared modules,
shared parameters, hooks, how often each module really ran) before it is folded.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass

import torch.fx
from torch import nn

from slimkit.kernels.batchnorm import is_batchnorm, is_foldable_layer


@dataclass(frozen=True)
class Candidate:
    """A (layer, bn) pair by qualified module name, and which analysis found it."""

    layer: str
    bn: str
    found_by: str


@dataclass(frozen=True)
class Rejected:
    """A Conv/Linear -> BatchNorm pattern that is not folded, and why."""

    layer: str
    bn: str
    reason: str


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _is_plain_sequential(module: nn.Module) -> bool:
    # A Sequential subclass with its own forward may not feed child i only to child i + 1.
    return isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward


def _trace(module: nn.Module) -> torch.fx.Graph:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.fx.Tracer().trace(module)


def _fx_pairs(module: nn.Module, graph: torch.fx.Graph, prefix: str,
              found: list[Candidate], rejected: list[Rejected]) -> None:
    calls = Counter(n.target for n in graph.nodes if n.op == "call_module")
    # Parameters read directly (``self.conv.weight`` in a forward) would see the folded values.
    read = [str(n.target) for n in graph.nodes if n.op == "get_attr"]
    for node in graph.nodes:
        if node.op != "call_module" or not is_batchnorm(module.get_submodule(str(node.target))):
            continue
        src = node.args[0] if node.args else None
        if not isinstance(src, torch.fx.Node) or src.op != "call_module":
            continue
        if not is_foldable_layer(module.get_submodule(str(src.target))):
            continue
        layer, bn = str(src.target), str(node.target)
        full = (_join(prefix, layer), _join(prefix, bn))
        if len(node.args) != 1 or node.kwargs:
            rejected.append(Rejected(*full, "BatchNorm is called with extra arguments"))
        elif len(src.users) != 1:
            rejected.append(Rejected(*full, "the layer's output is also used before BatchNorm"))
        elif calls[layer] != 1 or calls[bn] != 1:
            rejected.append(Rejected(*full, "the layer or BatchNorm is called more than once"))
        elif any(r.startswith(f"{t}.") for r in read for t in (layer, bn)):
            rejected.append(Rejected(*full, "the forward reads the layer's or BatchNorm's tensors directly"))
        else:
            found.append(Candidate(*full, "fx"))


def _sequential_pairs(seq: nn.Sequential, prefix: str, found: list[Candidate]) -> None:
    children = list(seq.named_children())
    for (name_a, a), (name_b, b) in zip(children, children[1:], strict=False):
        if is_foldable_layer(a) and is_batchnorm(b):
            found.append(Candidate(_join(prefix, name_a), _join(prefix, name_b), "sequential"))


def find_candidates(model: nn.Module) -> tuple[list[Candidate], list[Rejected], list[str]]:
    """Candidate pairs, rejected patterns, and the modules fx could not trace ("" is the root).

    Example:
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
        >>> find_candidates(net)[0]
        [Candidate(layer='0', bn='1', found_by='fx')]
    """
    found: list[Candidate] = []
    rejected: list[Rejected] = []
    untraced: list[str] = []
    leaf = torch.fx.Tracer().is_leaf_module

    def visit(module: nn.Module, prefix: str) -> None:
        try:
            graph = _trace(module)
        except Exception:  # fx raises many types (TraceError, TypeError, ...) for untraceable code
            untraced.append(prefix)
        else:
            _fx_pairs(module, graph, prefix, found, rejected)
            return
        if _is_plain_sequential(module):
            _sequential_pairs(module, prefix, found)  # type: ignore[arg-type]
        for name, child in module.named_children():
            if not leaf(child, _join(prefix, name)):
                visit(child, _join(prefix, name))

    visit(model, "")
    return found, rejected, untraced
