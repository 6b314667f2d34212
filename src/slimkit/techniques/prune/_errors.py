"""The error a model that cannot be pruned ends in: it names the layer."""

from __future__ import annotations

from slimkit.errors import SlimkitError


class PruneError(SlimkitError):
    """Pruning would give a wrong or broken model; ``layer`` names the module at fault."""

    def __init__(self, message: str, hint: str = "", layer: str | None = None) -> None:
        super().__init__(message, hint)
        self.layer = layer
