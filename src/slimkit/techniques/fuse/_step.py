"""Fuse as a recipe step and a search dimension."""

from __future__ import annotations

from slimkit.core.technique import Dimension, StepState, Technique
from slimkit.techniques.fuse._config import FuseConfig
from slimkit.techniques.fuse._torch import fuse_torch


def apply(state: StepState, config: FuseConfig) -> StepState:
    """Fold BatchNorms into the torch model (exact, checked)."""
    state.model, result = fuse_torch(state.model, state.task.example_inputs, config)
    state.info["fuse"] = {"fused": len(result.fused)}
    return state


TECHNIQUE = Technique(
    "fuse", FuseConfig, apply,
    "exact graph fusions: conv/linear + BatchNorm folding in torch, ONNX Runtime's saved graph optimizations",
    dimensions=(Dimension("fuse", "fold BatchNorm into the layer before it (exact)", (False, True)),),
    order=10,
)
