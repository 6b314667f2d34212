"""Technique configs as data: frozen dataclasses with a versioned JSON form.

Every technique's config subclasses :class:`StepConfig` and sets ``TYPE`` and ``VERSION``. A recipe
step is then ``{"type": ..., "version": ..., "data": {...}}``; ``slimkit.plugins.config_from_dict``
reads any registered technique's (the core does not know which techniques exist).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

from slimkit.errors import UsageError, shown

C = TypeVar("C", bound="StepConfig")


def _check_type(owner: str, name: str, value: Any, annotation: Any) -> None:
    origin = typing.get_origin(annotation)
    options = typing.get_args(annotation) if origin in (typing.Union, types.UnionType) else (annotation,)
    for opt in options:
        if opt is type(None) and value is None:
            return
        if opt is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):  # NaN passes every comparison a config makes of it
                raise UsageError(f"{owner} config: '{name}' must be a finite number, not "
                                 f"{'NaN' if math.isnan(value) else value}")
            return
        if opt is int and isinstance(value, int) and not isinstance(value, bool):
            return
        if opt in (bool, str) and isinstance(value, opt):
            return
        base = typing.get_origin(opt) or opt
        if base in (tuple, list) and isinstance(value, (tuple, list)):
            item = next((a for a in typing.get_args(opt) if a is not Ellipsis), Any)
            for element in value:  # tuple[str, ...]: each element is checked too
                _check_type(owner, f"{name}[]", element, item)
            return
        if base is typing.Literal and value in typing.get_args(opt):
            return
        if opt is Any:
            return
    words = {bool: "true or false", int: "a whole number", float: "a number", str: "a string",
             type(None): "null"}
    def describe(opt: Any) -> str:
        if typing.get_origin(opt) is typing.Literal:
            return "one of " + ", ".join(repr(a) for a in typing.get_args(opt))
        return words.get(opt, getattr(opt, "__name__", str(opt)))

    wanted = " or ".join(describe(o) for o in options)
    raise UsageError(f"{owner} config: '{name}' must be {wanted}, not {shown(value)}")


@dataclasses.dataclass(frozen=True)
class StepConfig:
    """Base of every technique config.

    Example:
        >>> @dataclasses.dataclass(frozen=True)
        ... class Demo(StepConfig):
        ...     TYPE: ClassVar[str] = "demo"
        ...     ratio: float = 0.5
        >>> Demo(ratio=0.3).to_dict()
        {'type': 'demo', 'version': 1, 'data': {'ratio': 0.3}}
        >>> Demo.from_dict({"type": "demo", "version": 1, "data": {"ratio": 0.3}})
        Demo(ratio=0.3)
    """

    TYPE: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            _check_type(self.TYPE, f.name, getattr(self, f.name), hints[f.name])
            if isinstance(getattr(self, f.name), list):  # keep configs hashable and frozen
                object.__setattr__(self, f.name, tuple(getattr(self, f.name)))

    def to_dict(self) -> dict[str, Any]:
        data = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            data[f.name] = list(value) if isinstance(value, tuple) else value
        return {"type": self.TYPE, "version": self.VERSION, "data": data}

    @classmethod
    def from_dict(cls: type[C], raw: Mapping[str, Any]) -> C:
        if not isinstance(raw, Mapping) or raw.get("type") != cls.TYPE:
            got = raw.get("type") if isinstance(raw, Mapping) else type(raw).__name__
            raise UsageError(f"not a {cls.TYPE} config (type {shown(got)})",
                             hint=f"expected {{'type': '{cls.TYPE}', ...}}")
        version = raw.get("version", cls.VERSION)
        if type(version) is not int or version < 1:
            raise UsageError(f"{cls.TYPE} config version must be a whole number >= 1, not {shown(version)}",
                             hint=f"this slimkit writes version {cls.VERSION}")
        if version > cls.VERSION:
            raise UsageError(f"{cls.TYPE} config version {version} is newer than this slimkit reads ({cls.VERSION})",
                             hint="upgrade slimkit or write the config again with this version")
        data = raw.get("data", {})
        if not isinstance(data, Mapping):
            raise UsageError(f"{cls.TYPE} config: 'data' must be a mapping of field: value, not {shown(data)}",
                             hint=f"e.g. {{type: {cls.TYPE}, data: {{}}}}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(map(str, set(data) - known))
        if unknown:
            raise UsageError(f"{cls.TYPE} config: unknown field(s) {', '.join(unknown)}",
                             hint=f"known fields: {', '.join(sorted(known))}")
        config = cls(**dict(data))  # the config's own checks first: they name the option
        for name, value in data.items():
            if isinstance(value, float) and value != value:  # NaN: every range check lets it through
                raise UsageError(f"{cls.TYPE} config: '{name}' is NaN", hint="give a number")
        return config
