"""The training engine shared by baseline training, pruning recovery, QAT and distillation."""

from slimkit.train.config import FULL_BATCH, TrainConfig
from slimkit.train.engine import TrainResult, evaluate_torch, fit
from slimkit.train.precision import PrecisionChoice
from slimkit.train.regularize import vision_augment

__all__ = ["FULL_BATCH", "PrecisionChoice", "TrainConfig", "TrainResult", "evaluate_torch", "fit",
           "vision_augment"]
