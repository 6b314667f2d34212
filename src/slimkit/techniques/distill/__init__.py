"""Knowledge distillation: a student learns from a frozen teacher through the training engine.

* response-based: soft targets at temperature T, scaled by T^2, weighted ``alpha`` against
  the hard-label loss (:func:`kd_loss`);
* feature matching between chosen teacher and student layers through learned 1x1-conv or
  linear adapters, paired by relative depth when none are named (:func:`feature_loss`,
  :func:`auto_pairs`);
* attention transfer between spatial feature maps (:func:`attention_loss`).

The teacher runs in eval mode without gradients; its logits can be cached once.

Example:
    >>> DistillConfig().to_dict()["type"]
    'distill'
"""

from slimkit.techniques.distill._config import DistillConfig
from slimkit.techniques.distill._distiller import Distiller, paired_batches
from slimkit.techniques.distill._features import Adapter, auto_pairs, candidate_layers
from slimkit.techniques.distill._run import DistillResult, distill_model
from slimkit.techniques.distill._step import TECHNIQUE
from slimkit.train.losses import attention_loss, feature_loss, kd_loss

__all__ = [
    "TECHNIQUE",
    "Adapter",
    "DistillConfig",
    "DistillResult",
    "Distiller",
    "attention_loss",
    "auto_pairs",
    "candidate_layers",
    "distill_model",
    "feature_loss",
    "kd_loss",
    "paired_batches",
]
