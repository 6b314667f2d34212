"""Least-squares re-fit of the layers that read pruned transformer units.

Removing attention heads or FFN neurons leaves the two projections that read them
(``attention.output.dense`` and ``output.dense``) with weights tuned for inputs that are gone.
Each of them is linear, so given the pruned model's remaining inputs on real tokens, the
weights that best reproduce the unpruned model's output have a closed form (ridge
regression). Layers are re-fitted in order, each on the inputs the already re-fitted pruned
model produces, so a layer also absorbs the error of the layers before it; the target is the
unpruned model's pre-LayerNorm sum (sub-layer output + residual) minus the pruned model's
own residual, so drift carried by the residual stream is corrected too.

A fit is kept only if it lowers the error on held-out tokens; the ridge term pulls towards
the weights the layer already has, so little data never produces wild weights.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from slimkit.core.data import Batch
from slimkit.core.task import run_model
from slimkit.kernels.hooks import Hooks
from slimkit.techniques.prune._transformer import bert_layers

MAX_TOKENS = 24_000  # enough for a 769-column regression per output (MiniLM FFN at 1/2)
MAX_BATCHES = 96


class _Captured(BaseException):
    """Ends a forward pass once the layer being re-fitted has been seen (later layers are not needed).
    Not an Exception: control flow, which the handlers of a forward's real failures must let pass."""


@dataclass
class ReconstructionResult:
    """Per re-fitted projection: relative error of its layer's pre-LayerNorm sum on held-out
    tokens, ``[before, after]`` (``after == before`` where the fit did not help and was dropped)."""

    tokens: int = 0
    layers: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {"tokens": self.tokens, "holdout_relative_error": self.layers}


def _sites(layer_name: str) -> list[tuple[str, str, str]]:
    """``(sub-layer module, its dense projection, the LayerNorm after the residual sum)``."""
    return [(f"{layer_name}.attention.output", f"{layer_name}.attention.output.dense",
             f"{layer_name}.attention.output.LayerNorm"),
            (f"{layer_name}.output", f"{layer_name}.output.dense", f"{layer_name}.output.LayerNorm")]


def _real_tokens(t: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """(batch, seq, d) -> (real tokens, d): padding never reaches the pooled output."""
    if mask is not None and mask.shape == t.shape[:2]:
        return t[mask.bool()]
    return t.reshape(-1, t.shape[-1])


def _teacher_sums(teacher: nn.Module, batches: list[Batch], norms: list[str]) -> dict[str, torch.Tensor]:
    modules = dict(teacher.named_modules())
    found: dict[str, list[torch.Tensor]] = {n: [] for n in norms}
    mask: list[torch.Tensor | None] = [None]
    with Hooks() as hooks:
        for n in norms:
            hooks.pre(modules[n], lambda _m, args, n=n: found[n].append(_real_tokens(args[0].float(), mask[0])))
        for inputs, _ in batches:
            mask[0] = inputs.get("attention_mask")
            run_model(teacher, inputs)
    return {n: torch.cat(v) for n, v in found.items()}


def _student_inputs(student: nn.Module, batches: list[Batch], site: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The projection's inputs and the residual the sub-layer adds, on real tokens."""
    module = dict(student.named_modules())[site]
    xs: list[torch.Tensor] = []
    rs: list[torch.Tensor] = []
    mask: list[torch.Tensor | None] = [None]

    def grab(_m: nn.Module, args: tuple, kwargs: dict) -> None:
        values = list(args) + [kwargs[k] for k in ("hidden_states", "input_tensor") if k in kwargs]
        xs.append(_real_tokens(values[0].float(), mask[0]))
        rs.append(_real_tokens(values[1].float(), mask[0]))
        raise _Captured

    with Hooks() as hooks:
        hooks.pre(module, grab, with_kwargs=True)
        for inputs, _ in batches:
            mask[0] = inputs.get("attention_mask")
            with contextlib.suppress(_Captured):  # the hook stops the pass once the layer is seen
                run_model(student, inputs)
    return torch.cat(xs), torch.cat(rs)


def _ridge(x: torch.Tensor, y: torch.Tensor, w0: torch.Tensor, ridge: float) -> tuple[torch.Tensor, torch.Tensor]:
    """argmin ||x W^T + b - y||^2 + lam ||W - w0||^2 (lam relative to the inputs' energy)."""
    x1 = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1).double()
    gram = x1.T @ x1
    k = x.shape[1]
    lam = ridge * float(gram.diagonal()[:k].mean())
    gram[:k, :k] += lam * torch.eye(k, dtype=gram.dtype)
    rhs = x1.T @ y.double()
    rhs[:k] += lam * w0.T.double()  # the bias is not regularised
    sol = torch.linalg.solve(gram, rhs)
    return sol[:k].T.float(), sol[k].float()


def _rel_err(pred: torch.Tensor, target: torch.Tensor) -> float:
    return float((pred - target).pow(2).sum() / target.pow(2).sum().clamp(min=1e-12))


@torch.no_grad()
def reconstruct_bert(student: nn.Module, teacher: nn.Module, data: Iterable[Batch], *,
                     max_tokens: int = MAX_TOKENS, ridge: float = 1e-3) -> ReconstructionResult:
    """Re-fit, in place and in order, every BERT layer's attention output and FFN output
    projection of the pruned ``student`` so its layers reproduce the unpruned ``teacher``'s.

    Example:
        >>> import copy, torch
        >>> from transformers import BertConfig, BertModel
        >>> from slimkit.techniques.prune import PruneConfig, prune_structured
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <...>
        >>> cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
        ...                  intermediate_size=32, attn_implementation="eager")
        >>> teacher = BertModel(cfg).eval()
        >>> student = copy.deepcopy(teacher)
        >>> ids = {"input_ids": torch.randint(0, 50, (1, 8))}
        >>> _ = prune_structured(student, ids, PruneConfig(ratio=0.5))
        >>> data = [({"input_ids": torch.randint(0, 50, (8, 16))}, None) for _ in range(8)]
        >>> res = reconstruct_bert(student, teacher, data)
        >>> all(after <= before for before, after in res.layers.values())
        True
    """
    names = [n for n, _ in bert_layers(student)]
    batches: list[Batch] = []
    tokens = 0
    for batch in itertools.islice(data, MAX_BATCHES):
        batches.append(batch)
        mask = batch[0].get("attention_mask")
        tokens += int(mask.sum()) if mask is not None else batch[0][next(iter(batch[0]))].numel()
        if tokens >= max_tokens:
            break
    result = ReconstructionResult(tokens=tokens)
    if not names or len(batches) < 2:
        return result
    held = max(1, len(batches) // 8)
    fit_batches, check_batches = batches[:-held], batches[-held:]
    sites = [s for n in names for s in _sites(n)]
    was_training = student.training
    student.eval()
    teacher.eval()
    fit_targets = _teacher_sums(teacher, fit_batches, [s[2] for s in sites])
    check_targets = _teacher_sums(teacher, check_batches, [s[2] for s in sites])
    modules = dict(student.named_modules())
    for site, dense_name, norm in sites:
        dense = modules[dense_name]
        if not isinstance(dense, nn.Linear) or dense.bias is None:
            continue  # not the BERT layout this re-fit knows
        x, r = _student_inputs(student, fit_batches, site)
        xc, rc = _student_inputs(student, check_batches, site)
        w, b = _ridge(x, fit_targets[norm] - r, dense.weight.float(), ridge)
        before = _rel_err(dense(xc.to(dense.weight.dtype)).float() + rc, check_targets[norm])
        after = _rel_err(xc @ w.T + b + rc, check_targets[norm])
        if after < before:
            dense.weight.copy_(w.to(dense.weight.dtype))
            dense.bias.copy_(b.to(dense.bias.dtype))
        result.layers[dense_name] = [round(before, 6), round(min(before, after), 6)]
    student.train(was_training)
    return result
