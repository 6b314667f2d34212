"""``fuse_torch``: fold BatchNorm into the preceding Conv/Linear on a copy, then prove it exact."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from slimkit.core.data import Inputs
from slimkit.errors import UsageError
from slimkit.export.parity import Parity, check_parity
from slimkit.kernels.batchnorm import (
    fold_batchnorm,
    is_batchnorm,
    is_foldable_layer,
    kind_of,
    replace_module,
    why_not_at_rank,
    why_not_foldable,
)
from slimkit.kernels.hooks import trace_calls
from slimkit.techniques.fuse._config import FuseConfig
from slimkit.techniques.fuse._pairs import Candidate, Rejected, find_candidates

# Folding is exact in real arithmetic; in float32 only the rounding order changes, which
# stays orders of magnitude below this. Low-precision models round far more coarsely.
_RTOL = {torch.float32: 1e-4, torch.float64: 1e-8}
_RTOL_LOW_PRECISION = 1e-2
_MIN_COSINE = 0.99999


@dataclass(frozen=True)
class FusedPair:
    """One folded pair: ``bn`` (now ``nn.Identity``) was folded into ``layer``."""

    layer: str
    bn: str
    kind: str  # "conv_bn" or "linear_bn"
    found_by: str  # "fx" (traced data flow) or "sequential" (adjacent in an nn.Sequential)


@dataclass(frozen=True)
class FuseResult:
    """What :func:`fuse_torch` did and how closely the fused model matches the original.

    ``skipped`` lists Conv/Linear -> BatchNorm patterns left alone, each with the reason;
    ``untraced`` names modules torch.fx could not trace ("" is the whole model), where only
    pairs adjacent in an ``nn.Sequential`` could be found.
    """

    fused: tuple[FusedPair, ...]
    skipped: tuple[Rejected, ...]
    untraced: tuple[str, ...]
    batchnorms_before: int
    batchnorms_after: int
    parity: Parity
    config: FuseConfig = field(default_factory=FuseConfig)

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "fused": [vars(p) for p in self.fused],
            "skipped": [vars(r) for r in self.skipped],
            "untraced": list(self.untraced),
            "batchnorms_before": self.batchnorms_before,
            "batchnorms_after": self.batchnorms_after,
            "parity": self.parity.to_dict(),
        }


def _tensors(output: object) -> list[torch.Tensor]:
    """Every tensor in a model output, in a fixed order, so all outputs are checked, not only the first."""
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, Mapping):
        return [t for v in output.values() for t in _tensors(v)]
    if isinstance(output, (tuple, list)):
        return [t for v in output for t in _tensors(v)]
    return []


def _count_batchnorms(model: nn.Module) -> int:
    return sum(1 for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))


def _has_user_hooks(module: nn.Module) -> bool:
    # Hooks observe the BatchNorm's input/output; folding would silently change what they see.
    return bool(module._forward_hooks or module._forward_pre_hooks or module._backward_hooks)


@dataclass
class _Run:
    """What one forward pass of the unfused copy showed: outputs, calls and output ranks per module."""

    outputs: list[torch.Tensor]
    calls: Counter[str]
    ranks: dict[str, int]


@torch.no_grad()
def _observe(model: nn.Module, inputs: Inputs) -> _Run:
    with trace_calls(model, lambda _n, m: is_foldable_layer(m) or is_batchnorm(m)) as seen:
        outputs = _tensors(model(**inputs))
    ranks = {c.name: len(c.shape) for c in seen if c.shape is not None}
    return _Run(outputs, Counter(c.name for c in seen), ranks)


def _why_not(model: nn.Module, cand: Candidate, run: _Run, hooked: set[str], uses: Counter[int],
             param_uses: Counter[int], config: FuseConfig) -> str | None:
    """Model-wide reasons a candidate pair may not be folded (beyond the pair's own arithmetic)."""
    layer, bn = model.get_submodule(cand.layer), model.get_submodule(cand.bn)
    reason = why_not_foldable(layer, bn)
    if reason:
        return reason
    if not getattr(config, kind_of(layer)):
        return f"{kind_of(layer)} is disabled in the config"
    if uses[id(layer)] != 1 or uses[id(bn)] != 1:
        return "the layer or BatchNorm is registered at more than one place in the model"
    if any(param_uses[id(p)] != 1 for p in (*layer.parameters(), *bn.parameters())):
        return "a parameter of the layer or BatchNorm is shared with another module"
    if cand.layer in hooked or cand.bn in hooked:
        return "the layer or BatchNorm has forward/backward hooks"
    if run.calls[cand.layer] != 1 or run.calls[cand.bn] != 1:
        # fx reads one static trace and Sequential adjacency is structural; the real run
        # says how often each module actually ran on the example inputs.
        return (f"on the example inputs the layer ran {run.calls[cand.layer]} time(s) and BatchNorm "
                f"{run.calls[cand.bn]} time(s), not once each")
    return why_not_at_rank(layer, run.ranks.get(cand.layer))


def _check(reference: list[torch.Tensor], fused: list[torch.Tensor]) -> Parity:
    if len(reference) != len(fused):
        raise UsageError(f"the fused model returned {len(fused)} tensors, the original {len(reference)}")
    worst: Parity | None = None
    for i, (ref, got) in enumerate(zip(reference, fused, strict=True)):
        rtol = _RTOL.get(ref.dtype, _RTOL_LOW_PRECISION) if ref.dtype.is_floating_point else 0.0
        what = "the BatchNorm-fused model" + (f" (output {i})" if len(reference) > 1 else "")
        parity = check_parity(ref, got, what, rtol=rtol, min_cosine=_MIN_COSINE)
        if worst is None:
            worst = parity
        else:
            worst = Parity(max(worst.max_abs_diff, parity.max_abs_diff), min(worst.cosine, parity.cosine),
                           max(worst.reference_scale, parity.reference_scale))
    return worst if worst is not None else Parity(0.0, 1.0, 0.0)


def fuse_torch(model: nn.Module, example_inputs: Inputs,
               config: FuseConfig | None = None) -> tuple[nn.Module, FuseResult]:
    """Fold every BatchNorm that directly follows a Conv or Linear into it, on an eval-mode copy.

    The returned model is a deep copy of ``model`` in eval mode, of the same class and with
    the same attribute names: each folded BatchNorm is replaced by ``nn.Identity`` and its
    layer gets the folded weight and a bias. ``model`` itself is not changed (nor its train/
    eval mode). Both models are then run on ``example_inputs`` and every output tensor
    compared; a mismatch raises :class:`~slimkit.errors.ParityError` instead of returning
    a wrong model. Pairs that cannot be folded exactly are listed in ``result.skipped``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
        >>> fused, result = fuse_torch(net, {"input": torch.randn(1, 1, 8, 8)})
        >>> fused
        Sequential(
          (0): Conv2d(1, 4, kernel_size=(3, 3), stride=(1, 1))
          (1): Identity()
          (2): ReLU()
        )
        >>> [(p.layer, p.bn) for p in result.fused], result.batchnorms_after
        ([('0', '1')], 0)
    """
    config = config if config is not None else FuseConfig()
    if not isinstance(example_inputs, Mapping):
        raise UsageError("example_inputs must be a dict of forward-argument names to tensors",
                         hint="use slimkit.as_inputs(model, tensor_or_tuple) to name positional inputs")
    try:
        fused = copy.deepcopy(model)
    except Exception as exc:
        raise UsageError(f"cannot copy the model to fuse it: {exc}",
                         hint="fuse works on a deep copy so the original stays untouched") from exc
    fused.eval()

    hooked = {n for n, m in fused.named_modules() if _has_user_hooks(m)}  # before ours are added
    # Running first also materializes lazy modules before their weights are read.
    run = _observe(fused, dict(example_inputs))
    candidates, rejected, untraced = find_candidates(fused)

    uses = Counter(id(m) for _, m in fused.named_modules(remove_duplicate=False))
    param_uses = Counter(id(p) for _, p in fused.named_parameters(remove_duplicate=False))
    done: list[FusedPair] = []
    skipped = list(rejected)
    for cand in candidates:
        reason = _why_not(fused, cand, run, hooked, uses, param_uses, config)
        if reason:
            skipped.append(Rejected(cand.layer, cand.bn, reason))
            continue
        layer = fused.get_submodule(cand.layer)
        fold_batchnorm(layer, fused.get_submodule(cand.bn))  # type: ignore[arg-type]
        replace_module(fused, cand.bn, nn.Identity())
        done.append(FusedPair(cand.layer, cand.bn, kind_of(layer), cand.found_by))

    with torch.no_grad():
        parity = _check(run.outputs, _tensors(fused(**example_inputs)))
    result = FuseResult(
        fused=tuple(done),
        skipped=tuple(skipped),
        untraced=tuple(untraced),
        batchnorms_before=_count_batchnorms(model),
        batchnorms_after=_count_batchnorms(fused),
        parity=parity,
        config=config,
    )
    return fused, result
