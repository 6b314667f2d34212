"""Sensitivity analysis: the metric after pruning one layer (or block) alone at several ratios,
and a greedy choice of non-uniform ratios that reaches a MAC reduction for the least loss."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from torch import nn

from slimkit.core.task import Task
from slimkit.measure.flops import count_macs
from slimkit.techniques.prune._config import PruneConfig
from slimkit.techniques.prune._errors import PruneError
from slimkit.techniques.prune._graph import ignored_layers
from slimkit.techniques.prune._structured import prune_structured
from slimkit.techniques.prune._transformer import bert_layers
from slimkit.train.engine import evaluate_torch

RATIOS = (0.25, 0.5, 0.75)


@dataclass
class Sensitivity:
    """``table[unit][ratio] = (metric, macs)`` with the unpruned ``metric`` and ``macs``."""

    metric: float
    macs: int
    table: dict[str, dict[float, tuple[float, int]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {"metric": self.metric, "macs": self.macs,
                "units": {u: {str(r): {"metric": m, "macs": c} for r, (m, c) in rows.items()}
                          for u, rows in self.table.items()}}


def prunable_units(model: nn.Module, task: Task, cfg: PruneConfig) -> list[str]:
    """Layers a ratio can be set for: BERT layers, else conv/linear layers not ignored."""
    layers = bert_layers(model)
    if layers:
        return [n for n, _ in layers]
    ignored = set(map(id, ignored_layers(model, task.example_inputs, cfg)))
    return [n for n, m in model.named_modules()
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)) and id(m) not in ignored
            and not (isinstance(m, nn.Conv2d) and m.groups == m.in_channels and m.groups > 1)]


def _pruned_copy(model: nn.Module, task: Task, cfg: PruneConfig, ratios: dict[str, float]) -> nn.Module:
    trial = copy.deepcopy(model)
    uniform = dataclasses.replace(cfg, ratio=0.0, head_ratio=0.0, ffn_ratio=0.0, scope="uniform",
                                  layer_ratios=tuple(f"{k}={v}" for k, v in ratios.items()))
    prune_structured(trial, task.example_inputs, uniform, data=task.calibration_data, loss_fn=task.loss)
    return trial


def analyse(model: nn.Module, task: Task, cfg: PruneConfig, ratios: Sequence[float] = RATIOS,
            progress: Callable[[str], None] | None = None) -> Sensitivity:
    """Prune each unit alone at each ratio on a copy; score on the calibration set."""
    data = task.calibration_data
    sens = Sensitivity(evaluate_torch(model, data, task.metric), count_macs(model, task.example_inputs))
    units = prunable_units(model, task, cfg)
    for i, unit in enumerate(units):
        row = {}
        for r in ratios:
            try:
                trial = _pruned_copy(model, task, cfg, {unit: r})
            except PruneError:
                continue  # a unit that cannot be pruned alone is simply not offered
            row[r] = (evaluate_torch(trial, data, task.metric), count_macs(trial, task.example_inputs))
        sens.table[unit] = row
        if progress:
            progress(f"  sensitivity {i + 1}/{len(units)} {unit}: "
                     + ", ".join(f"{r:.2f}->{m:.3f}" for r, (m, _) in row.items()))
    return sens


def choose_ratios(sens: Sensitivity, target_factor: float) -> dict[str, float]:
    """Greedy: repeatedly raise the unit whose next ratio saves the most MACs per metric lost,
    assuming losses add up, until the estimated MACs reach ``baseline / target_factor``."""
    goal = sens.macs / target_factor
    level = dict.fromkeys(sens.table, 0.0)
    est = float(sens.macs)
    while est > goal:
        best, best_value = None, -1.0
        for unit, rows in sens.table.items():
            nxt = [r for r in sorted(rows) if r > level[unit]]
            if not nxt:
                continue
            r = nxt[0]
            prev_m, prev_c = rows.get(level[unit], (sens.metric, sens.macs))
            saved = prev_c - rows[r][1]
            lost = max(prev_m - rows[r][0], 0.0) + 1e-6
            if saved > 0 and saved / lost > best_value:
                best, best_value = (unit, r, saved), saved / lost
        if best is None:
            break
        unit, r, saved = best
        level[unit] = r
        est -= saved
    return {u: r for u, r in level.items() if r > 0}


def ratios_for_macs(model: nn.Module, task: Task, cfg: PruneConfig, sens: Sensitivity,
                    target_factor: float) -> dict[str, float]:
    """Greedy ratios, then scaled up until the real pruned MACs meet the target (losses and
    savings do not add up exactly because coupled layers shrink together)."""
    ratios = choose_ratios(sens, target_factor)
    for _ in range(6):
        macs = count_macs(_pruned_copy(model, task, cfg, ratios), task.example_inputs)
        if sens.macs / max(macs, 1) >= target_factor:
            break
        ratios = {u: min(0.9, r * 1.15 + 0.02) for u, r in
                  {**dict.fromkeys(sens.table, 0.05), **ratios}.items()}
    return ratios
