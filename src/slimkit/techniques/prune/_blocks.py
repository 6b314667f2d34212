"""Block-internal structured pruning: the fallback for models Torch-Pruning's graph cannot handle.

Torch-Pruning traces the whole model to learn which layers must shrink together. Some models
defeat its tracer: ShuffleNetV2's channel shuffle (an error in its reshape index mapping), Swin's
and MaxViT's window partitions (an error, or a group search that does not finish). This pruner
needs no tracing: it only removes channels that are *internal to a block*, whose only reader is
known from the module tree.

A *chain* is found in a plain ``nn.Sequential`` (nested plain Sequentials flattened: their forward
just calls the children in order): a producer conv/linear, then only channel-wise modules
(BatchNorm, element-wise activations, Dropout, Identity, a depthwise conv with one filter per
channel, torchvision's SqueezeExcitation), then a consumer conv/linear of the same kind. Removing
some producer output channels, with the matching BN features, depthwise filters and SE weights
and the consumer's input channels, is the same model as zeroing those channels where they are
read: at the consumer's input, and at the SE's input (its squeeze mixes channels).

That equivalence is *checked* on the example inputs (the pruned model must match the unpruned
one run with those channels zeroed), so a wrong assumption — a module reused elsewhere, a
Sequential whose inner outputs something else reads — ends in a PruneError naming the layer,
never in a silently different model. Chains the example inputs do not run are left whole.

Left whole: every width that leaves a block (residual streams, concatenations, channel shuffles,
attention projections and embedding widths, patch merging).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeGuard

import torch
from torch import nn

from slimkit.core.data import Batch, Inputs
from slimkit.core.task import LossFn, run_model
from slimkit.kernels.batchnorm import out_features
from slimkit.kernels.hooks import Hooks, trace_calls
from slimkit.techniques.prune._config import PruneConfig
from slimkit.techniques.prune._counts import _counts
from slimkit.techniques.prune._errors import PruneError
from slimkit.techniques.prune._graph import ignored_layers
from slimkit.techniques.prune._importance import accumulate_gradients, row_scores

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_LAYERS = (*_CONVS, nn.Linear)
_BATCHNORM: dict[type[nn.Module], type[nn.Module]] = {
    nn.Conv1d: nn.BatchNorm1d, nn.Conv2d: nn.BatchNorm2d, nn.Conv3d: nn.BatchNorm3d, nn.Linear: nn.BatchNorm1d}
# Parameter-free modules that act on each element alone (exact types: a subclass may override forward).
_ELEMENTWISE = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh,
                nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.Mish, nn.Softplus, nn.Identity, nn.Dropout,
                nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
# The pruned model may differ from the masked reference only by float summation order.
_TOLERANCE = 1e-3


@dataclass
class Chain:
    """Channels made by ``producer`` and read only by ``members`` (channel-wise) and ``consumer``."""

    producer: str
    consumer: str
    modules: list[tuple[str, nn.Module]]  # producer, members..., consumer, in forward order
    keep: torch.Tensor | None = None  # sorted channel indices kept (set by the plan)

    @property
    def channels(self) -> int:
        return out_features(self.modules[0][1])

    @property
    def axis(self) -> int:
        """The channel axis of the tensors between producer and consumer."""
        return -1 if isinstance(self.modules[0][1], nn.Linear) else 1

    def removed(self) -> torch.Tensor:
        assert self.keep is not None
        mask = torch.ones(self.channels, dtype=torch.bool)
        mask[self.keep] = False
        return mask.nonzero().flatten()


def weight_of(m: nn.Module) -> torch.Tensor:
    """``m.weight``, typed (a module attribute reads as ``Tensor | Module`` to a type checker)."""
    weight = m.weight
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"{type(m).__name__}.weight is not a tensor")
    return weight


def _plain_sequential(m: nn.Module) -> TypeGuard[nn.Sequential]:
    """A Sequential whose forward is nn.Sequential's own: it calls its children in order, nothing else."""
    return isinstance(m, nn.Sequential) and type(m).forward is nn.Sequential.forward


@functools.cache
def _squeeze_excitation() -> type[nn.Module] | None:
    try:  # torchvision is optional (the ``vision`` extra)
        from torchvision.ops.misc import SqueezeExcitation
    except ImportError:  # pragma: no cover - depends on the environment
        return None
    return SqueezeExcitation


def _is_producer(m: nn.Module) -> bool:
    return type(m) in _LAYERS and getattr(m, "groups", 1) == 1 and out_features(m) > 1


def _is_consumer(m: nn.Module, kind: type[nn.Module], channels: int) -> bool:
    if type(m) is not kind:
        return False
    if isinstance(m, nn.Linear):
        return m.in_features == channels
    return isinstance(m, _CONVS) and m.groups == 1 and m.in_channels == channels


def _is_member(m: nn.Module, kind: type[nn.Module], channels: int) -> bool:
    """A module between producer and consumer that keeps channel ``c`` in channel ``c``."""
    if type(m) in _ELEMENTWISE or (type(m) is nn.PReLU and m.num_parameters == 1):
        return True
    if type(m) is _BATCHNORM[kind]:
        return isinstance(m, nn.modules.batchnorm._BatchNorm) and m.num_features == channels
    if type(m) is kind and isinstance(m, _CONVS):  # depthwise: one filter per channel
        return m.groups == m.in_channels == m.out_channels == channels
    se = _se_convs(m)
    return se is not None and kind is nn.Conv2d and se[0].in_channels == channels and se[1].out_channels == channels


def _is_se(m: nn.Module) -> bool:
    se = _squeeze_excitation()
    return se is not None and type(m) is se


def _se_convs(m: nn.Module) -> tuple[nn.Conv2d, nn.Conv2d] | None:
    """The squeeze (``fc1``) and excitation (``fc2``) convs of a torchvision SqueezeExcitation, else None."""
    if not _is_se(m):
        return None
    fc1, fc2 = m.fc1, m.fc2
    return (fc1, fc2) if isinstance(fc1, nn.Conv2d) and isinstance(fc2, nn.Conv2d) else None


def _reads_across(m: nn.Module) -> bool:
    """Whether a chain module mixes channels, so removed channels must be zeroed at its input:
    the consumer, and an SE block (its squeeze sums over channels); not BN, activations or a
    depthwise conv."""
    return _is_se(m) or (isinstance(m, _LAYERS) and getattr(m, "groups", 1) == 1)


def _flatten(seq: nn.Sequential, prefix: str) -> list[tuple[str, nn.Module]]:
    out: list[tuple[str, nn.Module]] = []
    for name, child in seq.named_children():
        full = f"{prefix}.{name}" if prefix else name
        out += _flatten(child, full) if _plain_sequential(child) else [(full, child)]
    return out


def find_chains(model: nn.Module) -> list[Chain]:
    """Every producer -> channel-wise modules -> consumer run in the model's plain Sequentials."""
    parents: dict[int, nn.Module] = {id(c): m for m in model.modules() for c in m.children()}
    chains: list[Chain] = []
    for name, seq in model.named_modules():
        if not _plain_sequential(seq) or _plain_sequential(parents.get(id(seq), nn.Module())):
            continue  # a nested plain Sequential is covered by its parent's flattened list
        items = _flatten(seq, name)
        for i, (pname, producer) in enumerate(items):
            if not _is_producer(producer):
                continue
            kind, width, j = type(producer), out_features(producer), i + 1
            while j < len(items) and _is_member(items[j][1], kind, width):
                j += 1
            if j < len(items) and _is_consumer(items[j][1], kind, width):
                chains.append(Chain(pname, items[j][0], items[i:j + 1]))
    return chains


def _usable(model: nn.Module, inputs: Inputs, cfg: PruneConfig, chains: list[Chain]) -> list[Chain]:
    """Drop chains that touch ignored or shared modules, or that the example inputs do not run."""
    listed = ignored_layers(model, inputs, cfg)  # also validates cfg.ignore's names
    by_name = dict(model.named_modules())
    user = [by_name[n] for n in cfg.ignore] + [m for m in listed if isinstance(m, nn.MultiheadAttention)]
    frozen = {id(s) for m in listed for s in m.modules()}  # outputs must keep their width
    untouchable = {id(s) for m in user for s in m.modules()}
    seen: dict[int, int] = {}
    for _, m in model.named_modules(remove_duplicate=False):
        seen[id(m)] = seen.get(id(m), 0) + 1
    firsts = {id(c.modules[0][1]) for c in chains}
    with trace_calls(model, lambda _n, m: id(m) in firsts) as calls, torch.no_grad():
        run_model(model, inputs)
    ran = {id(c.module) for c in calls}
    return [c for c in chains
            if id(c.modules[0][1]) in ran and id(c.modules[0][1]) not in frozen
            and not any(id(m) in untouchable or seen[id(m)] > 1 for _, m in c.modules)]


def _scores(chain: Chain, criterion: str) -> torch.Tensor:
    """Importance of each channel, from every weight that touches it (producer rows, depthwise
    filters, SE weights, consumer columns); ``bn_scale`` uses |gamma| of the chain's BatchNorms."""
    bns = [m for _, m in chain.modules[1:-1] if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine]
    if criterion == "bn_scale" and bns:
        return sum(m.weight.detach().abs() for m in bns)  # type: ignore[return-value]
    parts = [(weight_of(chain.modules[0][1]), 0), (weight_of(chain.modules[-1][1]), 1)]
    for _, m in chain.modules[1:-1]:
        se = _se_convs(m)
        if isinstance(m, _LAYERS):
            parts.append((m.weight, 0))
        elif se is not None:
            parts += [(se[0].weight, 1), (se[1].weight, 0)]
    return row_scores(parts, criterion)


def plan(chains: list[Chain], cfg: PruneConfig, ratios: dict[str, float]) -> None:
    """Set each chain's kept channels: a per-layer ratio (keyed by the producer) wins, else
    ``cfg.ratio`` uniform or one global ranking; counts rounded up to ``cfg.round_to``."""
    with torch.no_grad():
        scores = [_scores(c, cfg.criterion) for c in chains]
    pooled = [i for i, c in enumerate(chains) if c.producer not in ratios]
    keep_counts: dict[int, int] = {}
    if pooled:
        counts = _counts([scores[i] for i in pooled], cfg.ratio, cfg.scope, cfg.round_to or 1)
        keep_counts = dict(zip(pooled, counts, strict=True))
    for i, c in enumerate(chains):
        if i not in keep_counts:
            keep_counts[i] = _counts([scores[i]], ratios[c.producer], "uniform", cfg.round_to or 1)[0]
        c.keep = scores[i].topk(keep_counts[i]).indices.sort().values


def _take(module: nn.Module, name: str, keep: torch.Tensor, dim: int) -> None:
    p = getattr(module, name, None)
    if isinstance(p, nn.Parameter):
        setattr(module, name, nn.Parameter(p.detach().index_select(dim, keep).clone(), requires_grad=p.requires_grad))
    elif isinstance(p, torch.Tensor):  # a buffer (BN running statistics)
        setattr(module, name, p.index_select(dim, keep).clone())


def shrink_out(m: nn.Module, keep: torch.Tensor) -> None:
    """Keep only the output channels/features ``keep`` of a conv or linear layer."""
    _take(m, "weight", keep, 0)
    _take(m, "bias", keep, 0)
    if isinstance(m, nn.Linear):
        m.out_features = len(keep)
    elif isinstance(m, nn.modules.conv._ConvNd):
        m.out_channels = len(keep)
    else:
        raise TypeError(f"{type(m).__name__} is not a Conv/Linear layer")


def shrink_in(m: nn.Module, keep: torch.Tensor) -> None:
    """Keep only the input channels/features ``keep`` of a conv or linear layer."""
    _take(m, "weight", keep, 1)
    if isinstance(m, nn.Linear):
        m.in_features = len(keep)
    elif isinstance(m, nn.modules.conv._ConvNd):
        m.in_channels = len(keep)
    else:
        raise TypeError(f"{type(m).__name__} is not a Conv/Linear layer")


def _shrink_member(m: nn.Module, keep: torch.Tensor) -> None:
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        for name in ("weight", "bias", "running_mean", "running_var"):
            _take(m, name, keep, 0)
        m.num_features = len(keep)
    elif isinstance(m, _CONVS):  # depthwise
        shrink_out(m, keep)
        m.in_channels = m.groups = len(keep)
    elif (se := _se_convs(m)) is not None:  # squeeze-and-excitation: squeeze reads, excitation writes the channels
        shrink_in(se[0], keep)
        shrink_out(se[1], keep)


def apply(chain: Chain) -> None:
    """Remove the chain's unkept channels in place."""
    assert chain.keep is not None
    if len(chain.keep) == chain.channels:
        return
    shrink_out(chain.modules[0][1], chain.keep)
    for _, m in chain.modules[1:-1]:
        _shrink_member(m, chain.keep)
    shrink_in(chain.modules[-1][1], chain.keep)


def _zero_hook(removed: torch.Tensor, axis: int) -> Callable[..., tuple]:
    def hook(_m: nn.Module, args: tuple) -> tuple:
        x = args[0].clone()
        x.index_fill_(axis % x.dim(), removed, 0.0)
        return (x, *args[1:])
    return hook


def masked_output(model: nn.Module, inputs: Inputs, chains: list[Chain]) -> torch.Tensor:
    """The unpruned model's output with each chain's removed channels zeroed wherever they are read."""
    with Hooks() as hooks:
        for c in chains:
            for _, m in c.modules[1:]:
                if _reads_across(m):
                    hooks.pre(m, _zero_hook(c.removed(), c.axis))
        with torch.no_grad():
            return run_model(model.eval(), inputs)


def _mismatch(reference: torch.Tensor, model: nn.Module, inputs: Inputs) -> str | None:
    """Why the pruned model's output is not the reference's (None when it is, within float error)."""
    try:
        with torch.no_grad():
            out = run_model(model.eval(), inputs)
    except Exception as exc:
        return f"it no longer runs: {str(exc).splitlines()[0][:200]}"
    if out.shape != reference.shape:
        return f"the output shape changed {list(reference.shape)} -> {list(out.shape)}"
    diff = float((out - reference).abs().max()) if out.numel() else 0.0
    scale = float(reference.abs().max()) if out.numel() else 0.0
    if not diff <= _TOLERANCE * max(scale, 1e-6):  # also catches NaN
        return f"the output differs from the model with those channels zeroed (max diff {diff:.3g}, scale {scale:.3g})"
    return None


def prune_blocks(model: nn.Module, inputs: Inputs, cfg: PruneConfig, *, pristine: nn.Module,
                 ratios: dict[str, float] | None = None, data: Iterable[Batch] | None = None,
                 loss_fn: LossFn | None = None) -> list[Chain]:
    """Prune the block-internal channels of ``model`` in place; returns the chains (empty: nothing
    this pruner can prune). ``pristine`` is an unpruned copy, used to name a layer that fails.

    Example:
        >>> import copy, torch
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
        ...                           torch.nn.Conv2d(16, 4, 1)).eval()
        >>> chains = prune_blocks(net, {"input": torch.randn(1, 3, 4, 4)}, PruneConfig(ratio=0.5),
        ...                       pristine=copy.deepcopy(net))
        >>> [(c.producer, c.consumer) for c in chains], net[0].out_channels, net[1].num_features
        ([('0', '3')], 8, 8)
    """
    names = dict(model.named_modules())
    per_layer = {**cfg.parsed_layer_ratios(), **(ratios or {})}
    unknown = [n for n in per_layer if n not in names]
    if unknown:
        raise PruneError(f"layer_ratios names layer(s) not in the model: {', '.join(unknown)}",
                         hint="use names from model.named_modules()", layer=unknown[0])
    chains = _usable(model, inputs, cfg, find_chains(model))
    producers = {c.producer for c in chains}
    stray = [n for n, r in per_layer.items() if r > 0 and n not in producers]
    if stray:
        raise PruneError(f"layer '{stray[0]}' cannot be pruned: this model is pruned block-internally, where only "
                         f"layers whose outputs are read inside one block can shrink ({len(producers)} here)",
                         layer=stray[0], hint="set layer ratios only for those layers (see find_chains)")
    if not chains:
        return chains
    if cfg.criterion == "taylor":
        accumulate_gradients(model, data, loss_fn, cfg.calibration_batches)  # type: ignore[arg-type]
    plan(chains, cfg, per_layer)
    reference = masked_output(model, inputs, chains)
    for c in chains:
        apply(c)
    why = _mismatch(reference, model, inputs)
    if why is not None:
        bad, reason = _culprit(pristine, inputs, chains) or (chains[0], why)
        raise PruneError(f"layer '{bad.producer}' cannot be pruned block-internally: {reason}", layer=bad.producer,
                         hint=f"add '{bad.producer}' to ignore=... (--ignore on the CLI)")
    return chains


def _culprit(pristine: nn.Module, inputs: Inputs, chains: list[Chain]) -> tuple[Chain, str] | None:
    """The first chain that alone breaks the equivalence, on fresh copies of the unpruned model."""
    for c in chains:
        trial = copy.deepcopy(pristine)
        named = dict(trial.named_modules())
        mine = Chain(c.producer, c.consumer, [(n, named[n]) for n, _ in c.modules], c.keep)
        reference = masked_output(trial, inputs, [mine])
        apply(mine)
        why = _mismatch(reference, trial, inputs)
        if why is not None:
            return c, why
    return None
