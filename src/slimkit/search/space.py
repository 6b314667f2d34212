"""The search space: which techniques, settings and targets a trial may combine.

The space is generated from what is registered (``slimkit.plugins``): every technique offers its
dimensions (``prune_ratio``, ``quant_scheme``...) and its fixed settings (``recover_epochs``...),
so a technique installed from another package is searchable without editing this module. A
trial's parameters are plain categorical choices (so grid, random, TPE, GP and NSGA-II all
apply), turned into a :class:`~slimkit.pipeline.recipe.Recipe` by :meth:`SearchSpace.recipe`:
each technique, in its registered order, adds the steps the choices ask of it.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from slimkit.core.technique import Dimension, Technique
from slimkit.errors import UsageError, shown
from slimkit.pipeline.recipe import Recipe
from slimkit.plugins import techniques
from slimkit.targets import TARGETS

_DEFAULT_TARGETS = ("torch", "onnxruntime", "openvino")


def _ordered() -> list[Technique]:
    # Steps that change the torch model come before the one that deploys it, whatever their order.
    return sorted(techniques().values(), key=lambda t: (not t.changes_model, t.order))


def registered_dimensions() -> dict[str, tuple[Technique, Dimension]]:
    """Every search dimension a registered technique offers, in recipe order.

    Example:
        >>> list(registered_dimensions())[:2]
        ['fuse', 'prune_ratio']
    """
    return {d.name: (t, d) for t in _ordered() for d in t.dimensions}


def registered_settings() -> dict[str, Any]:
    """Every fixed search setting a registered technique reads, with its default."""
    found: dict[str, Any] = {}
    for tech in _ordered():
        for name, default in tech.settings.items():
            found.setdefault(name, default)
    return found


class SearchSpace:
    """Choices per dimension (an empty tuple leaves that dimension out) and fixed settings.

    Example:
        >>> space = SearchSpace(targets=("torch", "openvino"), fuse=(False, True))
        >>> space.recipe({"target": "openvino", "fuse": True}).describe()
        'fuse@openvino'
        >>> space.size()
        4
    """

    def __init__(self, targets: tuple[str, ...] | list[str] | str = _DEFAULT_TARGETS, **values: Any) -> None:
        dims, settings = registered_dimensions(), registered_settings()
        unknown = sorted(set(values) - set(dims) - set(settings))
        if unknown:
            known = sorted({"targets", *dims, *settings})
            close = difflib.get_close_matches(unknown[0], known, n=1)
            maybe = f" (did you mean '{close[0]}'?)" if close else ""
            raise UsageError(f"unknown search-space field(s): {', '.join(unknown)}{maybe}",
                             hint=f"known: {', '.join(known)}")
        self.targets: tuple[str, ...] = _choices(targets)
        self.choices: dict[str, tuple[Any, ...]] = {
            name: _choices(values.get(name, dim.default)) for name, (_, dim) in dims.items()}
        self.settings: dict[str, Any] = {name: values.get(name, default) for name, default in settings.items()}
        self._check()

    def _check(self) -> None:
        unknown = [t for t in self.targets if t not in TARGETS]
        if unknown:
            raise UsageError(f"search space: unknown target(s) {', '.join(map(repr, unknown))}",
                             hint=f"choose from: {', '.join(TARGETS.names())}")
        if not self.targets:
            raise UsageError("search space: targets needs at least one target", hint="e.g. targets: [onnxruntime]")
        for name in ("prune_ratio", "prune_head_ratio"):
            bad = [r for r in self.choices.get(name, ()) if isinstance(r, bool) or not isinstance(r, (int, float))
                   or not 0 <= r < 1]
            if bad:
                raise UsageError(f"search space: {name} values must be numbers in [0, 1), got {bad}",
                                 hint="0 means no pruning; 0.5 removes half")
        if self.settings.get("recover", "finetune") not in ("finetune", "distill"):
            raise UsageError(f"search space: recover must be 'finetune' or 'distill', got {self.settings['recover']!r}")
        for name, (_, dim) in registered_dimensions().items():
            if dim.default and all(isinstance(d, bool) for d in dim.default):
                bad = [v for v in self.choices.get(name, ()) if not isinstance(v, bool)]
                if bad:
                    raise UsageError(f"search space: {name} values must be true or false, got {shown(bad)}")
        # Every choice becomes its step config once here, beside the choices that bring in the most
        # steps (a distillation temperature is read only once pruning and distillation are on, the
        # recovery settings only with pruning), so a bad value (a wrong type, an unknown criterion or
        # scheme) is a UsageError before the baseline is measured, not the failure of every trial.
        dims = {k: v for k, v in self.dimensions().items() if k != "target"}
        busy: dict[str, Any] = {"prune_ratio": max((r for r in dims.get("prune_ratio", ()) if r), default=0.5)}
        for name, values in dims.items():
            if name != "prune_ratio":
                counts = [self._steps_with(busy, name, v) for v in values]
                busy[name] = values[counts.index(max(counts))]
        for name, values in dims.items():
            for value in values:
                self._steps_with(busy, name, value)

    def _steps_with(self, params: dict[str, Any], name: str, value: Any) -> int:
        """How many steps ``params`` with ``name`` set to ``value`` make; a value a technique cannot
        use is a UsageError naming it."""
        try:
            return len(self.recipe({**params, name: value}).steps)
        except (TypeError, ValueError) as exc:  # a technique converting the value itself
            raise UsageError(f"search space: {name} value {shown(value)} cannot be used: {exc}",
                             hint=f"see `slimkit optimize --help` for what {name} takes") from None

    def __setattr__(self, name: str, value: Any) -> None:
        if "settings" in self.__dict__:  # built: a space is a value, like the dataclass it was
            raise AttributeError(f"a SearchSpace is read-only: build another (SearchSpace(...)) to change '{name}'")
        super().__setattr__(name, value)

    def __getattr__(self, name: str) -> Any:
        # Dimensions and settings read as attributes (space.quant_scheme, space.recover_epochs).
        if name.startswith("_") or name in ("choices", "settings", "targets"):
            raise AttributeError(name)
        if name in self.choices:
            return self.choices[name]
        if name in self.settings:
            return self.settings[name]
        raise AttributeError(f"search space has no dimension or setting '{name}'")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchSpace) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(repr(sorted(self.to_dict().items())))

    def __repr__(self) -> str:
        shown = {k: v for k, v in self.to_dict().items() if v not in ([], None)}
        return f"SearchSpace({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    def dimensions(self) -> dict[str, list[Any]]:
        """Name -> choices of every dimension in play, the target first, then in recipe order."""
        dims: dict[str, list[Any]] = {"target": list(self.targets)}
        dims.update({name: list(values) for name, values in self.choices.items() if values})
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
        """The recipe for one set of choices: each technique, in registered order, adds its steps."""
        chosen = {"target": self.targets[0], **params}
        steps = [step for tech in _ordered() for step in tech.steps_for(chosen, self.settings)]
        return Recipe(tuple(steps), chosen["target"])

    def to_dict(self) -> dict[str, Any]:
        """Every dimension and setting as JSON (lists, not tuples): what a search stores to resume."""
        return {"targets": list(self.targets), **{k: list(v) for k, v in self.choices.items()}, **self.settings}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> SearchSpace:
        if not isinstance(raw, Mapping):
            raise UsageError("a search space must be a mapping of dimension -> choices")
        return cls(**dict(raw))


def _choices(value: Any) -> tuple[Any, ...]:
    """A dimension's choices as a tuple; one choice may be given bare ("targets: openvino"), and a
    string is never split into its letters."""
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return () if value is None else (value,)
