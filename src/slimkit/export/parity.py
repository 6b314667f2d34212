"""Numerical parity between a reference and a converted model's outputs."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from slimkit.errors import NonFiniteError, ParityError


@dataclass(frozen=True)
class Parity:
    """How closely two outputs agree: max absolute difference and cosine similarity."""

    max_abs_diff: float
    cosine: float
    reference_scale: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def compare(reference: torch.Tensor, candidate: torch.Tensor) -> Parity:
    """Compare two output tensors of the same shape.

    Example:
        >>> import torch
        >>> p = compare(torch.ones(2, 3), torch.ones(2, 3))
        >>> p.max_abs_diff, round(p.cosine, 6)
        (0.0, 1.0)
    """
    ref = reference.detach().float().reshape(-1)
    cand = candidate.detach().float().reshape(-1)
    if ref.shape != cand.shape:
        raise ParityError(
            f"output shapes differ: reference {list(reference.shape)} vs converted {list(candidate.shape)}",
            hint="the conversion changed the model's output; report this model as a bug",
        )
    diff = float((ref - cand).abs().max()) if ref.numel() else 0.0
    denom = float(ref.norm() * cand.norm())
    cosine = float(torch.dot(ref, cand) / denom) if denom > 0 else float(torch.equal(ref, cand))
    return Parity(diff, cosine, float(ref.abs().max()) if ref.numel() else 0.0)


def check_parity(
    reference: torch.Tensor,
    candidate: torch.Tensor,
    what: str,
    *,
    rtol: float = 1e-3,
    min_cosine: float = 0.9999,
) -> Parity:
    """Raise ParityError when ``candidate`` strays from ``reference`` beyond tolerance.

    The absolute tolerance scales with the output's magnitude (``rtol * max|reference|``)
    because logits and embeddings live on very different scales.

    Example:
        >>> import torch
        >>> check_parity(torch.ones(4), torch.ones(4) + 1e-6, "test").cosine > 0.9999
        True
    """
    if not torch.isfinite(reference).all():
        # Not the exporter's doing: the torch model itself outputs NaN or infinity on these inputs.
        raise NonFiniteError(f"the torch model's own output is NaN or infinite (checking {what})",
                             hint="the model (its weights or forward) is broken on its example inputs; "
                                  "check it in torch first")
    parity = compare(reference, candidate)
    atol = rtol * max(parity.reference_scale, 1e-6)
    if parity.max_abs_diff > atol or parity.cosine < min_cosine:
        raise ParityError(
            f"{what} does not match the torch model: max abs diff {parity.max_abs_diff:.3g} "
            f"(tolerance {atol:.3g}), cosine {parity.cosine:.6f} (minimum {min_cosine})",
            hint="the exporter or runtime changed the numerics; try another opset or target, "
            "or report the model",
        )
    return parity
