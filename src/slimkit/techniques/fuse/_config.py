"""The fuse step's configuration and its versioned JSON form."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from slimkit.errors import UsageError

_CURRENT_VERSION = 1


@dataclass(frozen=True)
class FuseConfig:
    """Which exact fusions :func:`fuse_torch` applies.

    ``conv_bn`` folds BatchNorm into the preceding Conv1d/2d/3d or ConvTranspose1d/2d/3d;
    ``linear_bn`` folds BatchNorm1d into the preceding Linear. ``version`` is the version of
    this config's JSON form, so a run folder written by a newer slimkit is refused, not misread.

    Example:
        >>> import json
        >>> cfg = FuseConfig(linear_bn=False)
        >>> cfg.to_dict()
        {'type': 'fuse', 'version': 1, 'data': {'conv_bn': True, 'linear_bn': False}}
        >>> FuseConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
        True
    """

    conv_bn: bool = True
    linear_bn: bool = True
    version: int = _CURRENT_VERSION

    TYPE: ClassVar[str] = "fuse"

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "version" and not isinstance(value, bool):
                raise UsageError(f"fuse config: '{f.name}' must be true or false, not {value!r}")
        # ``type(...) is int`` so that a JSON ``true`` or ``"1"`` is not taken for version 1.
        if type(self.version) is not int or self.version != _CURRENT_VERSION:
            raise UsageError(
                f"fuse config version {self.version} is not supported (this slimkit reads version "
                f"{_CURRENT_VERSION})",
                hint="upgrade slimkit or write the config again with this version",
            )

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form ``{"type": "fuse", "version": 1, "data": {...}}``."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "version"}
        return {"type": self.TYPE, "version": self.version, "data": data}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> FuseConfig:
        """Read the form :meth:`to_dict` writes; unknown keys are errors, not silently dropped.

        Example:
            >>> FuseConfig.from_dict({"type": "fuse", "version": 1, "data": {"conv_bn": False}})
            FuseConfig(conv_bn=False, linear_bn=True, version=1)
        """
        if not isinstance(raw, Mapping) or raw.get("type") != cls.TYPE:
            got = raw.get("type") if isinstance(raw, Mapping) else type(raw).__name__
            raise UsageError(f"not a fuse config (type {got!r})", hint="expected {'type': 'fuse', ...}")
        data = raw.get("data", {})
        if not isinstance(data, Mapping):
            raise UsageError("fuse config: 'data' must be a mapping")
        known = {f.name for f in fields(cls)} - {"version"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(
                f"fuse config: unknown field(s) {', '.join(unknown)}",
                hint=f"known fields: {', '.join(sorted(known))}",
            )
        return cls(**dict(data), version=raw.get("version", _CURRENT_VERSION))
