"""How many units each layer keeps: shared by transformer and block-internal pruning."""

from __future__ import annotations

import torch


def _counts(scores: list[torch.Tensor], ratio: float, scope: str, multiple: int,
            comparable: bool = False) -> list[int]:
    """How many units each layer keeps: uniform = the same fraction everywhere, global = one
    ranking across layers (at least ``multiple`` kept per layer). Global ranks ``comparable``
    scores as they are, others (weight magnitudes, whose scale differs by layer) as fractions
    of their layer's total; its counts round down to ``multiple`` so at least ``ratio`` goes."""
    if scope == "global":
        normed = scores if comparable else [s / s.sum().clamp(min=1e-12) for s in scores]
        flat = torch.cat(normed)
        n_remove = int(round(ratio * flat.numel()))
        threshold = flat.sort().values[n_remove - 1] if n_remove else -1.0
        counts = [min(len(s), max(multiple, int((s > threshold).sum()) // multiple * multiple)) for s in normed]
        # The per-layer minimum can keep more than allowed: take the weakest block of `multiple`.
        ranked = [s.sort(descending=True).values for s in normed]
        while sum(counts) > flat.numel() - n_remove:
            costs = [(float(r[c - multiple:c].sum()), i) for i, (r, c) in enumerate(zip(ranked, counts, strict=True))
                     if c > multiple]
            if not costs:
                break
            counts[min(costs)[1]] -= multiple
        return counts
    counts = [len(s) - int(round(ratio * len(s))) for s in scores]
    out = []
    for c, s in zip(counts, scores, strict=True):
        c = max(multiple, -(-c // multiple) * multiple) if multiple > 1 else max(1, c)
        out.append(min(c, len(s)))
    return out
