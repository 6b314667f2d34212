"""The fuse step's configuration and its versioned JSON form."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from slimkit.core.config import StepConfig


@dataclass(frozen=True)
class FuseConfig(StepConfig):
    """Which exact fusions :func:`fuse_torch` applies.

    ``conv_bn`` folds BatchNorm into the preceding Conv1d/2d/3d or ConvTranspose1d/2d/3d;
    ``linear_bn`` folds BatchNorm1d into the preceding Linear.

    Example:
        >>> import json
        >>> cfg = FuseConfig(linear_bn=False)
        >>> cfg.to_dict()
        {'type': 'fuse', 'version': 1, 'data': {'conv_bn': True, 'linear_bn': False}}
        >>> FuseConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
        True
    """

    TYPE: ClassVar[str] = "fuse"

    conv_bn: bool = True
    linear_bn: bool = True
