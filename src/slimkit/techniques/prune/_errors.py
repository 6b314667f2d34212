"""The error a model that cannot be pruned ends in: it names the layer."""

from __future__ import annotations

from slimkit.errors import SlimkitError


class PruneError(SlimkitError):
    """Pruning would give a wrong or broken model; ``layer`` names the module at fault."""

    def __init__(self, message: str, hint: str = "", layer: str | None = None) -> None:
        super().__init__(message, hint)
        self.layer = layer


class TraceError(PruneError):
    """Torch-Pruning could not trace the model's channel dependencies (nothing was pruned yet):
    structured pruning may fall back to the block-internal pruner."""
