"""The training engine shared by baseline training, pruning recovery, QAT and distillation."""

from slimkit.train.engine import TrainConfig, TrainResult, evaluate_torch, fit

__all__ = ["TrainConfig", "TrainResult", "evaluate_torch", "fit"]
