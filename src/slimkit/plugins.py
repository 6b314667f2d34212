"""Where techniques are registered: slimkit's own, then any installed package's.

A third party adds a technique or a target without editing slimkit, through Python entry points:

.. code-block:: toml

    [project.entry-points."slimkit.techniques"]
    mytech = "mypkg.tech:TECHNIQUE"      # a slimkit.core.technique.Technique
    [project.entry-points."slimkit.targets"]
    mytarget = "mypkg.target:MyTarget"   # a slimkit.targets.Target (class or instance)

The core never imports a technique: recipes, the search and ``slimkit list`` ask this module.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from slimkit._optional import available
from slimkit.core.config import StepConfig
from slimkit.core.registry import Registry
from slimkit.core.technique import Technique
from slimkit.errors import UsageError, shown

_BUILTIN = ("fuse", "prune", "distill", "quantize")


def _as_technique(obj: object) -> Technique:
    if not isinstance(obj, Technique):
        raise TypeError(f"a {type(obj).__name__}, not a slimkit.core.technique.Technique")
    if obj.name != obj.config.TYPE:  # recipes name a step by its config's TYPE and find it by that
        raise TypeError(f"technique '{obj.name}' has a config of type '{obj.config.TYPE}': they must be the same")
    return obj


TECHNIQUES: Registry[Technique] = Registry("technique", group="slimkit.techniques", check=_as_technique)
for _name in _BUILTIN:
    TECHNIQUES.register(_name, importlib.import_module(f"slimkit.techniques.{_name}").TECHNIQUE)


def techniques() -> dict[str, Technique]:
    """Every registered technique by name, slimkit's own first.

    Example:
        >>> list(techniques())[:4]
        ['fuse', 'prune', 'distill', 'quantize']
    """
    return dict(TECHNIQUES)


def technique(name: str) -> Technique:
    """A technique by name (its config's TYPE); an unknown name lists the known ones."""
    return TECHNIQUES.get(name)


def availability(tech: Technique) -> str | None:
    """None when the technique can run here, else why not (the first optional backend missing)."""
    for module in tech.requires:
        ok, why = available(module)
        if not ok:
            return why
    return None


def broken() -> dict[str, str]:
    """Technique, target and quantizer plug-ins that could not be loaded, with why (shown by ``slimkit list``)."""
    from slimkit.targets import TARGETS
    from slimkit.techniques.quantize import QUANTIZERS

    registries = (TECHNIQUES, TARGETS, QUANTIZERS)
    for registry in registries:
        registry.names()  # reads the entry points
    return {name: why for registry in registries for name, why in registry.broken.items()}


def config_from_dict(raw: Mapping[str, Any]) -> StepConfig:
    """Read any registered technique's step config from its ``{type, version, data}`` form.

    Example:
        >>> config_from_dict({"type": "fuse", "data": {}}).TYPE
        'fuse'
    """
    kind = raw.get("type") if isinstance(raw, Mapping) else None
    if not isinstance(kind, str) or kind not in TECHNIQUES:
        raise UsageError(f"unknown recipe step type {shown(kind)}",
                         hint=f"known: {', '.join(sorted(TECHNIQUES.names()))}")
    return TECHNIQUES.get(kind).config.from_dict(raw)
