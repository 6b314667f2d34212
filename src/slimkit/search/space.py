"""The search space: which techniques, settings and targets a trial may combine.

A trial's parameters are plain categorical choices (so grid, random, TPE, GP and NSGA-II
all apply), turned into a :class:`~slimkit.core.recipe.Recipe` by :meth:`SearchSpace.recipe`.
Technique steps are built from their registered config types, so the space only offers a
technique whose package imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from slimkit.core.config import config_from_dict
from slimkit.core.recipe import Recipe
from slimkit.errors import UsageError


@dataclass(frozen=True)
class SearchSpace:
    """Choices per dimension; an empty tuple leaves that technique out.

    Example:
        >>> space = SearchSpace(targets=("torch", "openvino"), fuse=(False, True))
        >>> space.recipe({"target": "openvino", "fuse": True}).describe()
        'fuse@openvino'
        >>> space.size()
        4
    """

    targets: tuple[str, ...] = ("torch", "onnxruntime", "openvino")
    fuse: tuple[bool, ...] = (False, True)
    prune_ratio: tuple[float, ...] = ()
    prune_criterion: tuple[str, ...] = ()
    # Transformers: the fraction of attention heads removed (FFN neurons follow prune_ratio);
    # unset, heads go at prune_ratio too.
    prune_head_ratio: tuple[float, ...] = ()
    recover_epochs: int = 0
    recover: str = "finetune"
    recover_lr: float | None = None
    round_to: int | None = None
    prune_scope: str | None = None
    distill: tuple[bool, ...] = ()
    temperature: tuple[float, ...] = ()
    quant_scheme: tuple[str, ...] = ()
    calibration: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name, f in self.__dataclass_fields__.items():
            value = getattr(self, name)
            if str(f.type).startswith("tuple") and not isinstance(value, tuple):
                # one choice given bare (a string would otherwise be iterated letter by letter)
                object.__setattr__(self, name, tuple(value) if isinstance(value, list) else (value,))
        from slimkit.targets import TARGETS

        unknown = [t for t in self.targets if t not in TARGETS.names()]
        if unknown:
            raise UsageError(f"search space: unknown target(s) {', '.join(map(repr, unknown))}",
                             hint=f"choose from: {', '.join(TARGETS.names())}")
        if not self.targets:
            raise UsageError("search space: targets needs at least one target", hint="e.g. targets: [onnxruntime]")
        for name in ("prune_ratio", "prune_head_ratio"):
            bad = [r for r in getattr(self, name) if not isinstance(r, (int, float)) or not 0 <= r < 1]
            if bad:
                raise UsageError(f"search space: {name} values must be numbers in [0, 1), got {bad}",
                                 hint="0 means no pruning; 0.5 removes half")
        # Every choice becomes its step config once here, so a bad value (an unknown criterion,
        # scope or scheme) is a UsageError before the baseline is measured, not a crash mid-search.
        ratio = max((r for r in self.prune_ratio if r), default=0.0)
        for name, values in self.dimensions().items():
            for value in values:
                self.recipe({"prune_ratio": ratio, name: value})

    def dimensions(self) -> dict[str, list[Any]]:
        """Name -> choices of every dimension that has more than one choice or matters."""
        dims: dict[str, list[Any]] = {"target": list(self.targets)}
        for name in ("fuse", "prune_ratio", "prune_criterion", "prune_head_ratio", "distill", "temperature",
                     "quant_scheme", "calibration"):
            values = list(getattr(self, name))
            if values:
                dims[name] = values
        return dims

    def size(self) -> int:
        n = 1
        for values in self.dimensions().values():
            n *= len(values)
        return n

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Ask an Optuna trial for one value per dimension."""
        return {name: trial.suggest_categorical(name, values) for name, values in self.dimensions().items()}

    def recipe(self, params: Mapping[str, Any]) -> Recipe:
        """The recipe for one set of choices (steps in a fixed, valid order)."""
        target = params.get("target", self.targets[0])
        steps = []
        if params.get("fuse"):
            steps.append(config_from_dict({"type": "fuse", "data": {}}))
        ratio = float(params.get("prune_ratio", 0.0) or 0.0)
        if ratio > 0:
            distill = bool(params.get("distill"))
            # With distillation on, recovery is the distill step (soft targets at the sampled
            # temperature, from the unmodified model) instead of plain fine-tuning.
            data: dict[str, Any] = {"ratio": ratio, "mode": "structured",
                                    "recover_epochs": 0 if distill else self.recover_epochs}
            if not distill and self.recover_epochs:
                # "distill" recovers from the unmodified model inside the prune step (hidden states
                # matched where shapes allow, on the task's transfer set); "finetune" on the task loss.
                data["recover"] = self.recover
                if self.recover_lr is not None:
                    data["lr"] = self.recover_lr
            if self.round_to:
                data["round_to"] = self.round_to
            if self.prune_scope:
                data["scope"] = self.prune_scope
            if "prune_criterion" in params:
                data["criterion"] = params["prune_criterion"]
            if "prune_head_ratio" in params:
                data["head_ratio"] = float(params["prune_head_ratio"])
            steps.append(config_from_dict({"type": "prune", "data": data}))
            if distill:
                ddata: dict[str, Any] = {"epochs": max(1, self.recover_epochs)}
                if "temperature" in params:
                    ddata["temperature"] = float(params["temperature"])
                steps.append(config_from_dict({"type": "distill", "data": ddata}))
        scheme = params.get("quant_scheme", "none")
        if scheme and scheme != "none":
            qdata: dict[str, Any] = {"scheme": scheme, "target": target}
            if "calibration" in params and scheme == "int8-static":  # the only scheme that calibrates
                qdata["calibration"] = params["calibration"]
            steps.append(config_from_dict({"type": "quantize", "data": qdata}))
        return Recipe(tuple(steps), target)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> SearchSpace:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - known)
        if unknown:
            raise UsageError(f"unknown search-space field(s): {', '.join(unknown)}",
                             hint=f"known: {', '.join(sorted(known))}")
        choices = {name for name, f in cls.__dataclass_fields__.items() if str(f.type).startswith("tuple")}
        # A single choice may be written without brackets ("targets: openvino"); never split a string.
        fixed = {k: (tuple(v) if isinstance(v, (list, tuple)) else (v,) if k in choices and v is not None else v)
                 for k, v in raw.items()}
        if fixed.get("recover", "finetune") not in ("finetune", "distill"):
            raise UsageError(f"search space: recover must be 'finetune' or 'distill', got {fixed['recover']!r}")
        return cls(**fixed)
