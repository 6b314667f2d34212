"""Automatic joint search over techniques, their settings and targets (Optuna)."""

from slimkit.search.space import SearchSpace
from slimkit.search.study import SAMPLERS, optimize

__all__ = ["SAMPLERS", "SearchSpace", "optimize"]
