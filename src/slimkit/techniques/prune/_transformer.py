"""BERT-family encoders (BERT, MiniLM, RoBERTa-style layouts): remove attention heads and FFN
neurons, and record the new per-layer sizes in the model's config so the model saves and reloads.

A layer is recognised by its submodules: ``attention.self.{query,key,value}``,
``attention.output.dense``, ``intermediate.dense`` and ``output.dense``. Head pruning
shrinks q/k/v rows and the attention output's columns head by head and updates the
attention module's ``num_attention_heads``/``all_head_size``; the head size never changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from slimkit.core.data import Batch
from slimkit.core.task import run_model
from slimkit.kernels.hooks import Hooks
from slimkit.techniques.prune._blocks import shrink_in, shrink_out, weight_of
from slimkit.techniques.prune._config import PruneConfig
from slimkit.techniques.prune._counts import _counts
from slimkit.techniques.prune._errors import PruneError
from slimkit.techniques.prune._importance import row_scores


def bert_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, layer)`` for every BERT-style transformer layer in ``model``."""
    found = []
    for name, m in model.named_modules():
        att = getattr(m, "attention", None)
        if (isinstance(getattr(getattr(att, "self", None), "query", None), nn.Linear)
                and isinstance(getattr(getattr(m, "intermediate", None), "dense", None), nn.Linear)
                and isinstance(getattr(getattr(m, "output", None), "dense", None), nn.Linear)):
            found.append((name, m))
    return found


@dataclass(frozen=True)
class _Parts:
    """The submodules of one BERT layer that head and FFN pruning read and shrink."""

    attention: nn.Module  # attention.self: holds the head count and size
    qkv: tuple[nn.Module, nn.Module, nn.Module]  # attention.self.{query,key,value}
    attention_out: nn.Module  # attention.output.dense: (hidden, heads * size)
    intermediate: nn.Module
    ffn_in: nn.Linear  # intermediate.dense
    ffn_out: nn.Linear  # output.dense

    @classmethod
    def of(cls, layer: nn.Module) -> _Parts:
        att = layer.get_submodule("attention.self")
        ffn_in, ffn_out = layer.get_submodule("intermediate.dense"), layer.get_submodule("output.dense")
        assert isinstance(ffn_in, nn.Linear) and isinstance(ffn_out, nn.Linear)  # checked by bert_layers
        return cls(att, (att.get_submodule("query"), att.get_submodule("key"), att.get_submodule("value")),
                   layer.get_submodule("attention.output.dense"), layer.get_submodule("intermediate"),
                   ffn_in, ffn_out)

    @property
    def heads(self) -> int:
        return _int_attr(self.attention, "num_attention_heads")

    @property
    def head_size(self) -> int:
        return _int_attr(self.attention, "attention_head_size")


def _int_attr(module: nn.Module, name: str) -> int:
    value = getattr(module, name)
    if not isinstance(value, int):
        raise PruneError(f"{type(module).__name__}.{name} is {value!r}, not a whole number",
                         hint="prune only the FFN (head_ratio=0) or ignore the layer")
    return value


def _head_scores(layer: nn.Module, criterion: str) -> torch.Tensor:
    p = _Parts.of(layer)
    rows = row_scores([(weight_of(m), 0) for m in p.qkv], criterion)
    cols = row_scores([(weight_of(p.attention_out), 1)], criterion)
    return (rows + cols).view(p.heads, p.head_size).sum(1)


def _ffn_scores(layer: nn.Module, criterion: str) -> torch.Tensor:
    p = _Parts.of(layer)
    return row_scores([(p.ffn_in.weight, 0), (p.ffn_out.weight, 1)], criterion)


@torch.no_grad()
def activation_scores(model: nn.Module, layers: list[tuple[str, nn.Module]], data: Iterable[Batch],
                      batches: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Data-aware scores: how much each head and FFN neuron adds to its layer's output.

    Head ``h``: the mean norm, over real tokens of ``batches`` calibration batches, of its
    context vectors pushed through its slice of the attention output projection. FFN neuron
    ``j``: mean ``|activation_j|`` times the norm of its output column. Unlike weight
    magnitudes these see what the model computes on real inputs; on all-MiniLM-L6-v2 they kept
    more fidelity right after pruning than L2 magnitudes or Taylor scores.

    Every unit writes into the same residual stream, so these scores are comparable across
    layers and the global scope ranks them as they are (global beat uniform ratios on MiniLM,
    and beat scores divided by the norm of the residual sum they join).
    """
    parts = [_Parts.of(m) for _, m in layers]
    heads = [torch.zeros(p.heads) for p in parts]
    ffn = [torch.zeros(p.ffn_in.out_features) for p in parts]
    state: dict[str, torch.Tensor | None] = {"mask": None}
    hooks = Hooks()

    def token_mask(x: torch.Tensor) -> torch.Tensor:
        mask = state["mask"]
        if mask is None or mask.shape != x.shape[:2]:
            return torch.ones(x.shape[:2], dtype=x.dtype)
        return mask.to(x.dtype)

    for i, p in enumerate(parts):
        w_o = weight_of(p.attention_out)  # (hidden, heads * size)
        w_out_norm = p.ffn_out.weight.norm(dim=0)

        def on_context(_m: nn.Module, args: tuple, _out: object, i: int = i, p: _Parts = p,
                       w_o: torch.Tensor = w_o) -> None:
            ctx = args[0]  # (batch, seq, heads * size): every head's context vectors side by side
            mask = token_mask(ctx)
            size = p.head_size
            for h in range(p.heads):
                part = ctx[..., h * size:(h + 1) * size] @ w_o[:, h * size:(h + 1) * size].T
                heads[i][h] += float((part.norm(dim=-1) * mask).sum() / mask.sum().clamp(min=1))

        def on_ffn(_m: nn.Module, _args: tuple, out: torch.Tensor, i: int = i,
                   w_out_norm: torch.Tensor = w_out_norm) -> None:
            mask = token_mask(out).unsqueeze(-1)
            mean_abs = (out.abs() * mask).sum(dim=(0, 1)) / mask.sum().clamp(min=1)
            ffn[i] += mean_abs * w_out_norm

        hooks.forward(p.attention_out, on_context)
        hooks.forward(p.intermediate, on_ffn)
    with hooks:
        for b, (inputs, _) in enumerate(data):
            if b >= batches:
                break
            state["mask"] = inputs.get("attention_mask")
            run_model(model, inputs)
    return heads, ffn


def prune_bert(model: nn.Module, cfg: PruneConfig, ratios: dict[str, float] | None = None,
               data: Iterable[Batch] | None = None) -> dict[str, list[int]]:
    """Prune heads and FFN neurons of every BERT layer in place; returns per-layer
    ``[heads before, heads after, ffn before, ffn after]``. The ``activation`` criterion
    reads ``cfg.calibration_batches`` batches of ``data``."""

    layers = bert_layers(model)
    head_ratio = cfg.ratio if cfg.head_ratio is None else cfg.head_ratio
    ffn_ratio = cfg.ratio if cfg.ffn_ratio is None else cfg.ffn_ratio
    overrides = {**cfg.parsed_layer_ratios(), **(ratios or {})}
    if cfg.criterion == "activation":
        if data is None:
            raise PruneError("the activation criterion needs calibration data", hint="pass the task, or use l1/l2")
        h_scores, f_scores = activation_scores(model, layers, data, cfg.calibration_batches)
    else:
        with torch.no_grad():
            h_scores = [_head_scores(m, cfg.criterion) for _, m in layers]
            f_scores = [_ffn_scores(m, cfg.criterion) for _, m in layers]
    comparable = cfg.criterion == "activation"
    h_keep = _counts(h_scores, head_ratio, cfg.scope, 1, comparable)
    f_keep = _counts(f_scores, ffn_ratio, cfg.scope, cfg.round_to or 1, comparable)
    sizes: dict[str, list[int]] = {}
    pruned_heads: dict[int, list[int]] = {}
    for i, ((name, layer), hs, fs) in enumerate(zip(layers, h_scores, f_scores, strict=True)):
        hk, fk = h_keep[i], f_keep[i]
        if name in overrides:  # a per-layer ratio applies to both heads and FFN of that layer
            hk = max(1, len(hs) - int(round(overrides[name] * len(hs))))
            fk = max(1, len(fs) - int(round(overrides[name] * len(fs))))
        p = _Parts.of(layer)
        att = p.attention
        if getattr(att, "is_cross_attention", False) or not hasattr(att, "num_attention_heads"):
            raise PruneError(f"layer '{name}' has an attention module this pruner does not know",
                             hint="prune only the FFN (head_ratio=0) or ignore the layer", layer=name)
        size = p.head_size
        heads = sorted(hs.topk(hk).indices.tolist())
        rows = torch.tensor([h * size + j for h in heads for j in range(size)])
        for m in p.qkv:
            shrink_out(m, rows)
        shrink_in(p.attention_out, rows)
        pruned_heads[i] = sorted(set(range(len(hs))) - set(heads))
        sizes[name] = [len(hs), hk, len(fs), fk]
        # torch types every module attribute as Tensor | Module; Hugging Face keeps these as plain ints.
        att.num_attention_heads = hk  # type: ignore[assignment]
        att.all_head_size = hk * size  # type: ignore[assignment]
        neurons = fs.topk(fk).indices.sort().values
        shrink_out(p.ffn_in, neurons)
        shrink_in(p.ffn_out, neurons)
    _update_config(model, sizes, pruned_heads)
    return sizes


def _update_config(model: nn.Module, sizes: dict[str, list[int]], pruned: dict[int, list[int]]) -> None:
    """Record the per-layer head and FFN sizes in every Hugging Face config inside ``model``.

    ``pruned_heads`` is Hugging Face's own field; ``slimkit_pruning`` holds per-layer
    sizes; ``intermediate_size`` is updated when every layer kept the same FFN width.
    """
    for m in model.modules():
        config = getattr(m, "config", None)
        if config is None or not hasattr(config, "num_attention_heads"):
            continue
        config.pruned_heads = {int(k): v for k, v in pruned.items()}
        config.slimkit_pruning = {"layers": {n: {"heads": s[1], "intermediate_size": s[3]}
                                             for n, s in sizes.items()}}
        ffn = {s[3] for s in sizes.values()}
        if len(ffn) == 1:
            config.intermediate_size = ffn.pop()
