"""The prune step's configuration and its versioned JSON form."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from slimkit.core.config import StepConfig
from slimkit.errors import UsageError

CRITERIA = ("l1", "l2", "taylor", "bn_scale", "activation")


@dataclass(frozen=True)
class PruneConfig(StepConfig):
    """How to prune, and how to recover afterwards.

    ``mode``: ``structured`` removes channels/neurons/heads (the model gets smaller and
    faster); ``unstructured`` zeroes single weights (smaller on disk with sparse storage).
    ``ratio``: fraction of channels (structured) or weights (unstructured) removed.
    ``scope``: ``uniform`` (every layer at ``ratio``) or ``global`` (one ranking over layers).
    ``layer_ratios``: per-layer overrides as ``"module.name=0.3"`` strings.
    ``head_ratio``/``ffn_ratio``: transformers (BERT family); default ``ratio``.
    ``pattern``: ``2:4`` keeps 2 of every 4 consecutive weights (unstructured only).
    ``schedule``: ``gradual`` raises sparsity over the recovery epochs on a cubic curve.
    ``round_to``: keep channel counts a multiple of this (e.g. 8 or 16).
    ``target_macs``: a MAC reduction factor (e.g. 3.0); non-uniform ratios are then chosen
    from a sensitivity analysis instead of ``ratio``.
    ``recover``: ``finetune`` on the task loss, or ``distill`` from the unpruned model (on the
    task's transfer set; ``hidden_weight`` weighs matching of hidden states where the pruned
    model keeps their shape, e.g. every BERT layer's output).
    ``reconstruct``: right after structured pruning of a transformer (BERT family), re-fit
    the projections that read the pruned heads/FFN neurons by least squares so each layer
    reproduces the unpruned model's output on tokens of the recovery's training data, never its
    validation split (no gradient steps; it recovers much of the fidelity pruning lost before any
    training).

    Example:
        >>> import json
        >>> cfg = PruneConfig(ratio=0.3, criterion="taylor", round_to=8)
        >>> PruneConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
        True
    """

    TYPE: ClassVar[str] = "prune"

    mode: Literal["structured", "unstructured"] = "structured"
    ratio: float = 0.5
    criterion: Literal["l1", "l2", "taylor", "bn_scale", "activation"] = "l2"
    scope: Literal["uniform", "global"] = "uniform"
    layer_ratios: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    head_ratio: float | None = None
    ffn_ratio: float | None = None
    pattern: Literal["none", "2:4"] = "none"
    schedule: Literal["oneshot", "gradual"] = "oneshot"
    round_to: int | None = None
    target_macs: float | None = None
    recover_epochs: int = 0
    recover: Literal["finetune", "distill"] = "finetune"
    hidden_weight: float = 1.0
    reconstruct: bool = True
    lr: float | None = None  # recovery learning rate; None: chosen for the model family (recovery_lr)
    max_drop: float | None = None
    calibration_batches: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_values()
        self._check_combinations()
        self.parsed_layer_ratios()

    def _check_values(self) -> None:
        """Each setting on its own (and the criterion against the mode)."""
        for name in ("ratio", "head_ratio", "ffn_ratio"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value < 1.0:
                raise UsageError(f"prune config: {name} must be in [0, 1), got {value}",
                                 hint="e.g. 0.5 removes half of the channels")
        if self.round_to is not None and not 1 <= self.round_to <= 4096:
            raise UsageError(f"prune config: round_to must be from 1 to 4096, got {self.round_to}",
                             hint="a channel multiple such as 8 or 16")
        if self.calibration_batches < 1:
            raise UsageError(f"prune config: calibration_batches must be >= 1, got {self.calibration_batches}")
        if self.target_macs is not None and self.target_macs <= 1.0:
            raise UsageError(f"prune config: target_macs is a reduction factor > 1, got {self.target_macs}")
        if self.criterion == "activation" and self.mode != "structured":
            raise UsageError("prune config: the activation criterion scores heads/FFN neurons (structured)",
                             hint="use l1, l2 or taylor for unstructured pruning")
        if self.hidden_weight < 0:
            raise UsageError(f"prune config: hidden_weight must be >= 0, got {self.hidden_weight}")
        if self.recover_epochs < 0:
            raise UsageError(f"prune config: recover_epochs must be >= 0, got {self.recover_epochs}")

    def _check_combinations(self) -> None:
        """Settings that only apply with others."""
        if self.schedule == "gradual" and (self.mode != "unstructured" or self.recover_epochs < 1):
            raise UsageError("prune config: the gradual schedule is for unstructured pruning during recovery",
                             hint="use mode='unstructured' with recover_epochs >= 1")
        structured_only = {"target_macs": self.target_macs is not None, "round_to": self.round_to is not None,
                           "criterion bn_scale": self.criterion == "bn_scale"}
        used = [name for name, on in structured_only.items() if on]
        if used and self.mode != "structured":
            raise UsageError(f"prune config: {', '.join(used)} apply to structured pruning (channels), not to "
                             "unstructured (zeroed weights keep the shapes and MACs)",
                             hint="drop them, or use mode='structured' (--structured)")
        if self.pattern == "2:4" and (self.ratio != 0.5 or self.scope != "uniform"):
            raise UsageError("prune config: the 2:4 pattern keeps 2 of every 4 weights: sparsity is 50% in every "
                             f"layer, so ratio {self.ratio} / scope {self.scope} cannot apply",
                             hint="drop --ratio/--scope with --pattern 2:4 (or give --ratio 0.5)")
        if (self.head_ratio is not None or self.ffn_ratio is not None) and self.mode != "structured":
            raise UsageError("prune config: head_ratio/ffn_ratio remove attention heads and FFN neurons "
                             "(structured pruning of transformers)", hint="drop them, or use mode='structured'")
        if self.pattern == "2:4" and self.mode != "unstructured":
            raise UsageError("prune config: the 2:4 pattern is unstructured", hint="use mode='unstructured'")
        # Recovery settings with recovery off, or a ratio that removes nothing, changed nothing while
        # the recipe recorded them.
        # lr 1e-3 was the recorded default before it became None (chosen by model family): old recipes hold it.
        recovery = [f"{name} {value}" for name, value, default in (
            ("recover", self.recover, "finetune"), ("lr", self.lr, None), ("hidden_weight", self.hidden_weight, 1.0))
            if value != default and not (name == "lr" and value == 1e-3)]
        if recovery and not self.recover_epochs:
            raise UsageError(f"prune config: {', '.join(recovery)} set the recovery, which is off (recover_epochs 0)",
                             hint="add --recover-epochs N, or drop them")
        if self.hidden_weight != 1.0 and self.recover != "distill":
            raise UsageError("prune config: hidden_weight weighs hidden-state matching in distillation recovery",
                             hint="add --recover distill, or drop --hidden-weight")
        heads = any(r for r in (self.head_ratio, self.ffn_ratio))
        if not self.ratio and self.target_macs is None and not self.layer_ratios and not heads:
            raise UsageError("prune config: ratio 0 removes nothing", hint="give a ratio in (0, 1), e.g. 0.3")

    def parsed_layer_ratios(self) -> dict[str, float]:
        """``layer_ratios`` as ``{module name: ratio}``."""
        out = {}
        for item in self.layer_ratios:
            name, sep, value = item.rpartition("=")
            try:
                ratio = float(value)
            except ValueError:
                ratio = -1.0
            if not sep or not name or not 0.0 <= ratio < 1.0:
                raise UsageError(f"prune config: layer ratio {item!r} is not 'module.name=R' with R in [0, 1)")
            out[name] = ratio
        return out
