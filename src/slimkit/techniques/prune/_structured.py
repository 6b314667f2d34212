"""Structured pruning: remove channels, neurons and heads so the model really gets smaller."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from slimkit.core.data import Batch, Inputs
from slimkit.core.task import LossFn, run_model
from slimkit.techniques.prune._blocks import prune_blocks
from slimkit.techniques.prune._config import PruneConfig
from slimkit.techniques.prune._errors import PruneError, TraceError
from slimkit.techniques.prune._graph import Rounding, build_pruner, graph_blocker, group_root, module_names
from slimkit.techniques.prune._importance import accumulate_gradients
from slimkit.techniques.prune._transformer import bert_layers, prune_bert

_WIDTH = {nn.Conv1d: "out_channels", nn.Conv2d: "out_channels", nn.Conv3d: "out_channels",
          nn.Linear: "out_features"}


@dataclass
class StructuredResult:
    """What was removed: per-layer output widths ``[before, after]`` of every layer that shrank.

    ``method`` says how: ``graph`` (Torch-Pruning's dependency graph, the whole network),
    ``blocks`` (only channels internal to a block: Torch-Pruning cannot handle the model, and
    ``note`` says why) or ``bert`` (attention heads and FFN neurons).
    """

    layers: dict[str, list[int]] = field(default_factory=dict)
    heads: dict[str, list[int]] = field(default_factory=dict)
    method: str = "graph"
    note: str = ""

    def to_dict(self) -> dict[str, object]:
        return {"kind": "structured", "layers": self.layers, "heads": self.heads, "method": self.method,
                "note": self.note}


def widths(model: nn.Module) -> dict[str, int]:
    return {n: getattr(m, _WIDTH[type(m)]) for n, m in model.named_modules() if type(m) in _WIDTH}


def check_model(model: nn.Module, inputs: Inputs, expected: torch.Size, what: str) -> None:
    """A pruned model must still run, keep its output shape and stay finite."""
    try:
        with torch.no_grad():
            out = run_model(model.eval(), inputs)
    except Exception as exc:
        raise PruneError(f"the pruned model no longer runs ({what}): {str(exc).splitlines()[0][:300]}",
                         layer=what) from exc
    if out.shape != expected:
        raise PruneError(f"pruning {what} changed the output shape {list(expected)} -> {list(out.shape)}",
                         layer=what)
    if not torch.isfinite(out).all():
        raise PruneError(f"the pruned model outputs NaN/inf after pruning {what}", layer=what)


def prune_structured(
    model: nn.Module, inputs: Inputs, cfg: PruneConfig, *, data: Iterable[Batch] | None = None,
    loss_fn: LossFn | None = None, ratios: dict[str, float] | None = None,
) -> StructuredResult:
    """Remove channels in place. BERT-family encoders lose heads and FFN neurons instead.

    Other models go through Torch-Pruning's dependency graph (the whole network). Where it cannot
    be used (a module type it is known to get wrong or hang on, see ``_graph.graph_blocker``, or
    a model it fails to trace) only channels internal to a block are pruned, each block checked
    to be exact (``_blocks``); ``result.method``/``result.note`` say which path was taken and why.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
        >>> r = prune_structured(net, {"input": torch.randn(1, 4)}, PruneConfig(ratio=0.5))
        >>> r.layers, net[0].out_features
        ({'0': [16, 8]}, 8)
    """
    model.eval()
    with torch.no_grad():
        expected = run_model(model, inputs).shape
    before = widths(model)
    result = StructuredResult()
    if cfg.criterion == "taylor" and (data is None or loss_fn is None):
        raise PruneError("the taylor criterion needs data and a loss", hint="pass the task, or use l1/l2")
    if cfg.criterion == "activation" and not bert_layers(model):
        raise PruneError("the activation criterion scores transformer heads and FFN neurons (BERT family)",
                         hint="use l1, l2, taylor or bn_scale for this model")
    if bert_layers(model):
        if cfg.criterion == "taylor":
            accumulate_gradients(model, data, loss_fn, cfg.calibration_batches)  # type: ignore[arg-type]
        result.heads = prune_bert(model, cfg, ratios, data)
        result.method = "bert"
        check_model(model, inputs, expected, "the attention heads / FFN neurons")
    else:
        pristine = copy.deepcopy(model)
        reason = graph_blocker(model)
        untraced: TraceError | None = None
        if reason is None:
            try:
                rounding = _prune_graph(model, inputs, cfg, data, loss_fn, ratios, None)
                check_model(model, inputs, expected, "all groups")
                result.note = rounding.note(cfg.round_to) if cfg.round_to else ""
            except TraceError as exc:  # raised before anything was pruned
                untraced, reason = exc, f"Torch-Pruning {exc.message}"
            except PruneError as first:
                # Find the first group whose removal breaks the model, on a fresh copy, to name it.
                trial = copy.deepcopy(pristine)
                _prune_graph(trial, inputs, cfg, data, loss_fn, ratios, expected)
                raise first
        if reason is not None:
            _prune_blocks(model, pristine, inputs, cfg, data, loss_fn, ratios, reason, untraced)
            check_model(model, inputs, expected, "the block-internal channels")
            result.method, result.note = "blocks", f"{reason}; only channels internal to a block were pruned"
    model.zero_grad(set_to_none=True)
    after = widths(model)
    result.layers = {n: [w, after[n]] for n, w in before.items() if n in after and after[n] != w}
    return result


def _prune_graph(model: nn.Module, inputs: Inputs, cfg: PruneConfig, data: Iterable[Batch] | None,
                 loss_fn: LossFn | None, ratios: dict[str, float] | None, check: torch.Size | None) -> Rounding:
    """Prune every group Torch-Pruning ranks; returns what rounding to ``cfg.round_to`` did."""
    pruner = build_pruner(model, inputs, cfg, ratios)
    names = module_names(model)
    if cfg.criterion == "taylor":
        accumulate_gradients(model, data, loss_fn, cfg.calibration_batches)  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        groups = pruner.step(interactive=True)
        while True:
            try:
                group = next(groups)
            except StopIteration:
                break
            except Exception as exc:
                raise PruneError(f"could not rank channels: {str(exc).splitlines()[0][:300]}") from exc
            root = group_root(group, names)
            try:
                group.prune()
            except Exception as exc:
                raise PruneError(f"layer '{root}' cannot be pruned: {str(exc).splitlines()[0][:300]}",
                                 hint=f"add '{root}' to ignore=... (--ignore on the CLI)", layer=root) from exc
            if check is not None:
                try:
                    check_model(model, inputs, check, f"layer '{root}'")
                except PruneError as exc:
                    raise PruneError(f"layer '{root}' cannot be pruned: {exc.message}",
                                     hint=f"add '{root}' to ignore=... (--ignore on the CLI)", layer=root) from exc
    return pruner.slimkit_rounding


def _prune_blocks(model: nn.Module, pristine: nn.Module, inputs: Inputs, cfg: PruneConfig,
                  data: Iterable[Batch] | None, loss_fn: LossFn | None, ratios: dict[str, float] | None,
                  reason: str, untraced: TraceError | None) -> None:
    """The fallback where Torch-Pruning cannot build its graph: prune only block-internal channels
    (see ``_blocks``); a model with none of those keeps the original error."""
    chains = prune_blocks(model, inputs, cfg, pristine=pristine, ratios=ratios, data=data, loss_fn=loss_fn)
    if chains:
        return
    hint = ("the block-internal fallback found no prunable channels either (a conv/linear followed, inside "
            "an nn.Sequential, only by BatchNorm/activations/depthwise convs and then another conv/linear); "
            "use unstructured pruning")
    if untraced is not None:
        raise PruneError(untraced.message, hint=hint, layer=untraced.layer) from untraced
    raise PruneError(f"{reason}, and the model has no block-internal channels to prune", hint=hint)
