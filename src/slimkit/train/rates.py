"""Learning rates that fit the model: pretrained transformers train at rates far below a small CNN's."""

from __future__ import annotations

from torch import nn

# By model family and what the training does. Pretrained transformers fine-tune at rates far below a
# small CNN's: 1e-3 took a pruned MiniLM classifier from 75.7 to 26.9 validation accuracy in one epoch.
# Distillation's per-layer signal takes a higher rate than fine-tuning on labels. A student distilled
# from its teacher as a step of its own (``student``) may start far from the teacher (a smaller
# CNN from scratch), so a CNN student keeps the higher rate distillation was tuned at on digits.
RATES = {("transformer", "finetune"): 2e-5, ("transformer", "distill"): 2e-4, ("transformer", "student"): 2e-4,
         ("other", "finetune"): 1e-3, ("other", "distill"): 1e-3, ("other", "student"): 3e-3}


def model_family(model: nn.Module) -> str:
    """"transformer" for a model with attention layers (torch's or Hugging Face's), else "other".

    Example:
        >>> model_family(nn.TransformerEncoderLayer(8, 2)), model_family(nn.Linear(2, 2))
        ('transformer', 'other')
    """
    for m in model.modules():
        if isinstance(m, nn.MultiheadAttention) or type(m).__name__.endswith(("Attention", "SelfAttention")):
            return "transformer"
    return "transformer" if hasattr(model, "config") and hasattr(model.config, "num_attention_heads") else "other"


def learning_rate(model: nn.Module, method: str, given: float | None = None) -> float:
    """``given``, else the rate for ``model``'s family and ``method`` (finetune, distill or student).

    Example:
        >>> learning_rate(nn.Linear(2, 2), "student"), learning_rate(nn.Linear(2, 2), "student", 0.1)
        (0.003, 0.1)
    """
    return given if given is not None else RATES[(model_family(model), method)]
