"""The shared suite every registered technique passes: its config round-trips as data, its search
dimensions build valid steps, and applying it to tiny CNN, MLP and transformer models leaves a model
(or a deployed artifact) that still runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from tests.conftest import make_tiny_task

from slimkit.core.config import StepConfig
from slimkit.core.task import run_model
from slimkit.core.technique import StepState, Technique
from slimkit.plugins import availability, config_from_dict, techniques

# A cheap configuration of each built-in technique for the apply test (seconds on a tiny model); a
# technique from elsewhere runs with its config's defaults.
_CHEAP: dict[str, dict[str, Any]] = {
    "prune": {"ratio": 0.5},
    "distill": {"epochs": 1},
    "quantize": {"scheme": "int8-dynamic", "target": "onnxruntime"},
}
_TARGET = {"quantize": "onnxruntime"}


def _params() -> list[Any]:
    out = []
    for name, tech in techniques().items():
        why_not = availability(tech)
        marks = [pytest.mark.skip(reason=why_not)] if why_not else []
        out.append(pytest.param(tech, id=name, marks=marks))
    return out


@pytest.mark.parametrize("tech", _params())
class TestTechnique:
    def test_describes_itself(self, tech: Technique) -> None:
        assert tech.name == tech.config.TYPE and tech.description
        assert issubclass(tech.config, StepConfig) and callable(tech.apply)
        assert len({d.name for d in tech.dimensions}) == len(tech.dimensions)

    def test_config_round_trips_as_json(self, tech: Technique) -> None:
        cfg = tech.config(**_CHEAP.get(tech.name, {}))
        raw = json.loads(json.dumps(cfg.to_dict()))
        assert raw["type"] == tech.name and raw["version"] == tech.config.VERSION
        assert config_from_dict(raw) == cfg

    def test_dimensions_build_valid_steps(self, tech: Technique) -> None:
        for dim in tech.dimensions:
            for value in dim.default:
                params = {"target": _TARGET.get(tech.name, "torch"), "prune_ratio": 0.5, dim.name: value}
                for step in tech.steps_for(params, tech.settings):
                    assert isinstance(step, StepConfig)
                    assert config_from_dict(step.to_dict()) == step

    @pytest.mark.parametrize("family", ["cnn", "mlp", "transformer"])
    def test_apply_leaves_a_model_that_runs(self, tech: Technique, family: str, tmp_path: Path) -> None:
        task = make_tiny_task(family)
        target = _TARGET.get(tech.name, "torch")
        state = StepState(task, task.build_model(), target, tmp_path, 1)
        state = tech.apply(state, tech.config(**_CHEAP.get(tech.name, {})))
        assert isinstance(state, StepState)
        batch = {k: v[:2] for k, v in next(iter(task.eval_data))[0].items()}
        if state.deployed is not None:
            assert not tech.changes_model and state.deployed.target == target
            out = state.deployed.run(batch)
        else:
            with torch.no_grad():
                out = run_model(state.model, batch)
        assert out.shape[0] == 2 and torch.isfinite(out).all()
        json.dumps(state.info)  # what a step records is data a report can hold
