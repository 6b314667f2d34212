"""The dependency graph (Torch-Pruning): which layers must shrink together, and what to leave alone."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from slimkit.core.data import Inputs
from slimkit.core.task import run_model
from slimkit.kernels.hooks import trace_calls
from slimkit.techniques.prune._config import PruneConfig
from slimkit.techniques.prune._errors import PruneError, TraceError
from slimkit.techniques.prune._importance import tp_importance

_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)

# Module types Torch-Pruning 1.6 gets wrong; models containing one are not handed to it (they go
# to the block-internal pruner). Matched by qualified class name, subclasses included, so
# torchvision (optional) need not be imported.
_GRAPH_UNSUPPORTED = {
    # Window attention / window-grid partitions (reshapes + permutes of channel-last tensors): its
    # flatten index mapping expands index lists without end, get_all_groups does not finish
    # (swin_t > 4 min, maxvit_t > 5 min; swin_s/b fail with a TypeError instead). A hang cannot be
    # interrupted from inside the process, so it must not be started.
    "torchvision.models.swin_transformer.ShiftedWindowAttention":  # also ShiftedWindowAttentionV2
        "its dependency search does not finish on window attention",
    "torchvision.models.maxvit.PartitionAttentionLayer":
        "its dependency search does not finish on window/grid partitions",
    # Channel shuffle (view -> transpose -> view): its reshape index mapping fails at 64x64 and
    # 224x224 (division by zero) and, where it does not fail, maps channels wrongly: a tiny
    # ShuffleNetV2 pruned 25% runs but is 1.6% off the same model with the removed channels
    # zeroed (exact pruning gives float noise), a single shuffle block pruned 50% no longer runs.
    "torchvision.models.shufflenetv2.InvertedResidual": "it maps channels wrongly through the channel shuffle",
}


def module_names(model: nn.Module) -> dict[nn.Module, str]:
    return {m: (n or "<model>") for n, m in model.named_modules()}


def output_layers(model: nn.Module, inputs: Inputs) -> list[nn.Module]:
    """Layers whose channels are the model's output channels (e.g. the classifier): never pruned.

    Found by running the model: the last conv/linear executed whose output has as many
    channels as the model's output has on axis 1 (or the last axis for sequences).
    """
    with trace_calls(model, lambda _n, m: isinstance(m, _LAYERS)) as calls, torch.no_grad():
        out = run_model(model, inputs)
    wanted = {out.shape[1] if out.dim() > 1 else out.shape[0], out.shape[-1]}
    found = []
    for mod, shape in reversed([(c.module, c.shape) for c in calls if c.shape is not None]):
        channels = shape[-1] if isinstance(mod, nn.Linear) else shape[1]
        if channels in wanted:
            found.append(mod)
            break
    return found


def ignored_layers(model: nn.Module, inputs: Inputs, cfg: PruneConfig) -> list[nn.Module]:
    by_name = dict(model.named_modules())
    missing = [n for n in cfg.ignore if n not in by_name]
    if missing:
        raise PruneError(f"ignore names layer(s) not in the model: {', '.join(missing)}",
                         hint="use names from model.named_modules()", layer=missing[0])
    ignored = [by_name[n] for n in cfg.ignore] + output_layers(model, inputs)
    # Attention blocks tie the embedding width to head counts; generic graphs keep them whole
    # (BERT-family heads are pruned by the transformer path, which updates the config).
    ignored += [m for m in model.modules() if isinstance(m, nn.MultiheadAttention)]
    return ignored


def graph_blocker(model: nn.Module) -> str | None:
    """Why Torch-Pruning's graph must not be used for ``model`` (None: it may be tried)."""
    for name, m in model.named_modules():
        for cls in type(m).__mro__:
            reason = _GRAPH_UNSUPPORTED.get(f"{cls.__module__}.{cls.__qualname__}")
            if reason is not None:
                return f"Torch-Pruning is not used: {reason} ('{name or '<model>'}', {type(m).__name__})"
    return None


def build_pruner(model: nn.Module, inputs: Inputs, cfg: PruneConfig,
                 ratios: dict[str, float] | None = None):  # noqa: ANN201 - a tp MetaPruner
    """A Torch-Pruning MetaPruner for ``model`` configured from ``cfg``.

    ``ratios`` (module name -> ratio) overrides ``cfg.layer_ratios`` (used by sensitivity search).
    """
    import torch_pruning as tp

    names = dict(model.named_modules())
    per_layer = dict(cfg.parsed_layer_ratios())
    per_layer.update(ratios or {})
    unknown = [n for n in per_layer if n not in names]
    if unknown:
        raise PruneError(f"layer_ratios names layer(s) not in the model: {', '.join(unknown)}",
                         hint="use names from model.named_modules()", layer=unknown[0])
    for p in model.parameters():
        p.requires_grad_(True)  # the graph is traced through autograd
    try:
        with warnings.catch_warnings(), torch.enable_grad():
            warnings.simplefilter("ignore")
            pruner = tp.pruner.MetaPruner(
                model, dict(inputs), importance=tp_importance(cfg.criterion),
                global_pruning=cfg.scope == "global", pruning_ratio=cfg.ratio,
                pruning_ratio_dict={names[n]: r for n, r in per_layer.items()} or None,
                max_pruning_ratio=0.95, ignored_layers=ignored_layers(model, inputs, cfg),
                round_to=cfg.round_to, forward_fn=lambda m, x: run_model(m, x),
            )
    except PruneError:
        raise
    except Exception as exc:  # Torch-Pruning raises many types while tracing
        raise TraceError(f"could not trace the model's channel dependencies: {str(exc).splitlines()[0][:300]}",
                         hint="the model uses an operation the dependency graph cannot follow; "
                              "add the layer to ignore=... or use unstructured pruning") from exc
    rounding = Rounding()
    # Torch-Pruning (1.6) rounds the channels a group keeps *down* to the multiple, although its
    # docs say "nearest": 30% asked of 32 channels at round_to=8 removed 50%. The instance
    # attribute replaces its method; the record lets the result say what rounding changed.
    pruner._round_to = rounding
    pruner.slimkit_rounding = rounding
    return pruner


class Rounding:
    """Rounds a group's kept channels to the *nearest* multiple (at least one multiple kept) and
    records, per group, the channels it had, the removal asked and the removal done."""

    def __init__(self) -> None:
        self.groups: list[tuple[int, int, int]] = []

    def __call__(self, n_pruned: int, current: int, multiple: int) -> int:
        kept = current - n_pruned
        rounded = max(multiple, int((kept + multiple / 2) // multiple) * multiple) if current >= multiple else kept
        done = max(0, current - min(rounded, current))
        self.groups.append((current, n_pruned, done))
        return done

    def note(self, multiple: int, tolerance: float = 0.0) -> str:
        """A sentence when rounding moved a group's removal by more than ``tolerance`` of its
        channels, or found groups narrower than ``multiple`` (left unrounded); empty otherwise, e.g.
        "round_to=8 moved 2 of 3 groups: 32 channels: 10 asked, 8 removed; ..."."""
        narrow = sum(c < multiple for c, _, _ in self.groups)
        narrow_note = (f"{narrow} group(s) narrower than round_to={multiple} keep an unrounded width"
                       if narrow else "")
        moved = [(c, a, d) for c, a, d in self.groups if abs(d - a) > tolerance * c]
        if not moved:
            return narrow_note
        asked, done = sum(a for _, a, _ in self.groups), sum(d for _, _, d in self.groups)
        total = sum(c for c, _, _ in self.groups)
        shown = "; ".join(f"{c} channels: {a} asked, {d} removed" for c, a, d in moved[:4])
        more = f"; {len(moved) - 4} more" if len(moved) > 4 else ""
        return (f"round_to={multiple} moved the removal of {len(moved)} of {len(self.groups)} channel groups "
                f"({shown}{more}): {done} of {total} channels removed where {asked} were asked "
                f"({done / max(total, 1):.0%} instead of {asked / max(total, 1):.0%})"
                + (f"; {narrow_note}" if narrow_note else ""))


def group_root(group, names: dict[nn.Module, str]) -> str:  # noqa: ANN001
    """The name of the layer a Torch-Pruning group was ranked for."""
    try:
        return names.get(group[0].dep.target.module, str(group[0].dep.target))
    except Exception:  # pragma: no cover - defensive: naming must never hide the real error
        return "<unknown layer>"
