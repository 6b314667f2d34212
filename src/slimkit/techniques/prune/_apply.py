"""The whole prune step on a task's model: choose ratios, prune, recover, report what changed."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from slimkit.core.task import Task
from slimkit.errors import UsageError
from slimkit.kernels.batchnorm import reestimate
from slimkit.measure.flops import count_macs, count_params
from slimkit.techniques.prune._config import PruneConfig
from slimkit.techniques.prune._importance import accumulate_gradients
from slimkit.techniques.prune._reconstruct import ReconstructionResult, reconstruct_bert
from slimkit.techniques.prune._recover import RecoveryResult, recover, train_split
from slimkit.techniques.prune._sensitivity import Sensitivity, analyse, ratios_for_macs
from slimkit.techniques.prune._structured import prune_structured
from slimkit.techniques.prune._unstructured import (
    apply_masks,
    cubic_sparsity,
    hold_masks,
    magnitude_masks,
    overall_sparsity,
    sparsity_table,
)
from slimkit.train.engine import evaluate_torch

Progress = Callable[[str], None]


@dataclass
class PruneResult:
    """What pruning did: config, per-layer sizes or sparsity, MACs/params before and after."""

    config: PruneConfig
    layers: dict[str, Any] = field(default_factory=dict)
    heads: dict[str, list[int]] = field(default_factory=dict)
    method: str | None = None  # structured: "graph", "blocks" (fallback, see note) or "bert"
    note: str = ""
    macs: list[int] = field(default_factory=list)
    params: list[int] = field(default_factory=list)
    sparsity: float | None = None
    ratios: dict[str, float] = field(default_factory=dict)
    sensitivity: Sensitivity | None = None
    metric_after_prune: float | None = None
    reconstruction: ReconstructionResult | None = None
    metric_after_recovery: float | None = None
    recovery: RecoveryResult | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.config.mode, "config": self.config.to_dict(),
            "macs_before_after": self.macs, "params_before_after": self.params,
            "macs_reduction": round(self.macs[0] / max(self.macs[1], 1), 4) if self.macs else None,
            "sparsity": self.sparsity, "layers": self.layers, "heads": self.heads,
            "method": self.method, "note": self.note,
            "chosen_ratios": self.ratios,
            "sensitivity": self.sensitivity.to_dict() if self.sensitivity else None,
            "metric_after_prune_before_recovery": self.metric_after_prune,
            "reconstruction": self.reconstruction.to_dict() if self.reconstruction else None,
            "metric_after_recovery": self.metric_after_recovery,
            "recovery": self.recovery.to_dict() if self.recovery else None,
        }


def prune_model(model: nn.Module, task: Task, cfg: PruneConfig, *, floor: float | None = None,
                progress: Progress | None = None,
                on_validation: Callable[[int, float, float], None] | None = None) -> tuple[nn.Module, PruneResult]:
    """Prune a copy of ``model`` for ``task`` and recover it; the input model is untouched.

    ``on_validation(epoch, validation metric, MACs left as a fraction of the original)`` is
    called after every recovery epoch and may raise to stop (the search's early stopping).

    Example:
        >>> import torch
        >>> from slimkit.core.data import Batches
        >>> from slimkit.core.task import Metric, accuracy
        >>> x = torch.randn(32, 4); data = Batches({"input": x}, (x[:, 0] > 0).long(), 16)
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
        >>> task = Task("t", net, {"input": x[:1]}, data, data, data, Metric("acc", accuracy),
        ...             torch.nn.functional.cross_entropy)
        >>> pruned, res = prune_model(net, task, PruneConfig(ratio=0.5))
        >>> res.params
        [114, 58]
    """
    say = progress or (lambda _m: None)
    _check_config(model, cfg)
    teacher = model.eval()
    student = copy.deepcopy(model).eval()
    inputs = task.example_inputs
    result = PruneResult(cfg, macs=[count_macs(student, inputs)], params=[count_params(student)])
    masks = None
    if cfg.mode == "structured":
        _prune_channels(student, teacher, task, cfg, result, say)
    else:
        masks = _prune_weights(student, task, cfg)
    # The statistics each BatchNorm kept were measured on the unpruned network's activations.
    if reestimate(student, task.calibration_data):
        say("BatchNorm statistics re-estimated on the calibration data")
    result.metric_after_prune = evaluate_torch(student, task.eval_data, task.metric)
    say(f"{task.metric.name} after pruning, before recovery: {result.metric_after_prune:.4f}")
    if cfg.recover_epochs:
        say(f"recovering ({cfg.recover}, up to {cfg.recover_epochs} epochs)")
        left = count_macs(student, inputs) / max(result.macs[0], 1)
        validated = None if on_validation is None else (lambda e, v: on_validation(e, v, left))
        result.recovery = _recover_pruned(student, teacher, task, cfg, masks, floor, validated, say)
        if result.recovery is not None and result.recovery.undone:
            result.note = "; ".join(n for n in (result.note, "recovery lowered the validation metric and was "
                                                "undone (the model before recovery is kept)") if n)
    if result.recovery is not None:
        # Reported, never used to choose: recovery stopped on its validation split.
        result.metric_after_recovery = evaluate_torch(student, task.eval_data, task.metric)
        say(f"{task.metric.name} after recovery: {result.metric_after_recovery:.4f}")
    if cfg.mode == "unstructured":
        result.layers = sparsity_table(student)
        result.sparsity = round(overall_sparsity(student), 4)
    result.macs.append(count_macs(student, inputs))
    result.params.append(count_params(student))
    if cfg.mode == "structured":
        _note_shortfall(result, model, cfg.target_macs)
    return student.eval(), result


def _check_config(model: nn.Module, cfg: PruneConfig) -> None:
    """Layer names and a criterion the model cannot honour are refused before any work."""
    modules = {name for name, _ in model.named_modules()}
    unknown = [n for n in (*cfg.ignore, *cfg.parsed_layer_ratios()) if n not in modules]
    if unknown:
        raise UsageError(f"prune config names layer(s) the model does not have: {', '.join(unknown)}",
                         hint="use names from model.named_modules() (--ignore, --layer-ratio)")
    if cfg.criterion == "bn_scale" and not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise UsageError("the bn_scale criterion ranks channels by their BatchNorm scale, and this model has no "
                         "BatchNorm layer", hint="use --criterion l2 (or l1, taylor)")


def _prune_channels(student: nn.Module, teacher: nn.Module, task: Task, cfg: PruneConfig, result: PruneResult,
                    say: Progress) -> None:
    """Structured: remove channels (heads, neurons) from ``student`` in place, at the configured
    ratios or at those the sensitivity analysis picks for ``target_macs``; fills ``result``."""
    ratios = None
    heads_asked = cfg.head_ratio is not None or cfg.ffn_ratio is not None  # before target_macs zeroes them
    if cfg.target_macs is not None:
        say(f"sensitivity analysis for a {cfg.target_macs}x MAC reduction")
        result.sensitivity = analyse(student, task, cfg, progress=say)
        ratios = ratios_for_macs(student, task, cfg, result.sensitivity, cfg.target_macs)
        result.ratios = {k: round(v, 4) for k, v in ratios.items()}
        cfg = dataclasses.replace(cfg, ratio=0.0, head_ratio=0.0, ffn_ratio=0.0)
    say("pruning channels" if cfg.target_macs is None else f"pruning {len(ratios or {})} layers")
    pruned = prune_structured(student, task.example_inputs, cfg, data=task.calibration_data, loss_fn=task.loss,
                              ratios=ratios)
    if pruned.method != "bert" and heads_asked:
        raise UsageError("head_ratio/ffn_ratio apply to BERT-family transformers (attention heads, FFN "
                         "neurons), and this model is not one", hint="drop --head-ratio/--ffn-ratio")
    result.layers, result.heads = pruned.layers, pruned.heads
    result.method, result.note = pruned.method, pruned.note
    if pruned.note:
        say(pruned.note)
    if cfg.reconstruct and pruned.method == "bert":
        say("re-fitting the layers that read pruned heads/neurons (least squares)")
        # The re-fit sees the recovery's training part only: its validation split stays unseen.
        result.reconstruction = reconstruct_bert(student, teacher, train_split(task, cfg.recover))


def _prune_weights(student: nn.Module, task: Task, cfg: PruneConfig) -> dict[str, torch.Tensor]:
    """Unstructured: zero ``student``'s smallest weights in place (the first step of a gradual
    schedule); returns the masks recovery holds."""
    if cfg.criterion == "taylor":
        accumulate_gradients(student, task.calibration_data, task.loss, cfg.calibration_batches)
    first = cubic_sparsity(1, cfg.recover_epochs, cfg.ratio) if cfg.schedule == "gradual" else cfg.ratio
    masks = _masks(student, cfg, first)
    apply_masks(student, masks)
    student.zero_grad(set_to_none=True)
    return masks


def _recover_pruned(student: nn.Module, teacher: nn.Module, task: Task, cfg: PruneConfig,
             masks: dict[str, torch.Tensor] | None, floor: float | None,
             validated: Callable[[int, float], None] | None, say: Progress) -> RecoveryResult:
    """Train the pruned ``student`` back; unstructured masks stay applied (and, on a gradual
    schedule, grow after every epoch)."""
    if masks is None:
        return recover(student, task, epochs=cfg.recover_epochs, lr=cfg.lr, method=cfg.recover, teacher=teacher,
                       floor=floor, seed=cfg.seed, hidden_weight=cfg.hidden_weight, on_validation=validated,
                       progress=say)

    def raise_sparsity(epoch: int, _row: dict[str, float]) -> None:
        if cfg.schedule == "gradual":  # the masks are updated in place: the hooks see them
            target = cubic_sparsity(epoch + 1, cfg.recover_epochs, cfg.ratio)
            for name, keep in _masks(student, cfg, target).items():
                masks[name].copy_(keep)
            apply_masks(student, masks)

    with hold_masks(student, masks):
        return recover(student, task, epochs=cfg.recover_epochs, lr=cfg.lr, method=cfg.recover, teacher=teacher,
                       floor=None if cfg.schedule == "gradual" else floor, seed=cfg.seed,
                       on_epoch=raise_sparsity, on_validation=validated, progress=say,
                       # a gradual schedule reaches the asked sparsity during recovery: no going back
                       keep_better=cfg.schedule != "gradual")


def _note_shortfall(result: PruneResult, model: nn.Module, target_macs: float | None) -> None:
    """Say when structured pruning removed nothing, or fewer MACs than --target-macs asked: both
    were reported as a success without a word."""
    before, after = result.macs[0], result.macs[-1]
    notes = []
    if after >= before:
        kinds = sorted({type(m).__name__ for m in model.modules() if not list(m.children())
                        and any(p.dim() > 1 for p in m.parameters(recurse=False))})
        notes.append("structured pruning removed nothing: no channel group of this model could be pruned "
                     f"(its weighted layers: {', '.join(kinds) or 'none'}); try unstructured pruning")
    elif target_macs is not None and before / max(after, 1) < 0.9 * target_macs:
        notes.append(f"reached {before / max(after, 1):.2f}x fewer MACs, short of the {target_macs:g}x asked: "
                     "the prunable layers could not give more (each keeps at least one channel)")
    if notes:
        result.note = "; ".join([n for n in (result.note, *notes) if n])


def _masks(model: nn.Module, cfg: PruneConfig, sparsity: float) -> dict[str, torch.Tensor]:
    return magnitude_masks(model, sparsity, scope=cfg.scope, pattern=cfg.pattern,
                           criterion="l2" if cfg.criterion == "bn_scale" else cfg.criterion,
                           per_layer=cfg.parsed_layer_ratios(), skip=cfg.ignore)
