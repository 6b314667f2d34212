"""A technique and a target from another package, installed through entry points, with no edit to
slimkit: listed by `slimkit list`, run in a recipe, drawn by a search."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from slimkit.plugins import TECHNIQUES, technique
from slimkit.targets import TARGETS
from slimkit.techniques.quantize import QUANTIZERS

_PLUGIN = '''
"""A toy slimkit plug-in: a technique that scales the logits, a target that is torch eager renamed."""
import dataclasses
from typing import ClassVar

import torch

from slimkit.core.config import StepConfig
from slimkit.core.technique import Dimension, Technique
from slimkit.targets.onnxruntime import OnnxRuntime
from slimkit.targets.torch_eager import TorchEager
from slimkit.techniques.quantize import Quantizer, Support
from slimkit.techniques.quantize._backends import OrtBackend


@dataclasses.dataclass(frozen=True)
class ScaleConfig(StepConfig):
    TYPE: ClassVar[str] = "toyscale"
    factor: float = 1.0


def apply(state, config):
    last = [m for m in state.model.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():  # a positive factor keeps every argmax: accuracy must not move
        last.weight.mul_(config.factor)
        last.bias.mul_(config.factor)
    state.info["toyscale"] = {"note": f"logits scaled by {config.factor}"}
    return state


TECHNIQUE = Technique("toyscale", ScaleConfig, apply, "toy: scales the logits",
                      dimensions=(Dimension("toyscale_factor", "the scale"),))


class ToyTarget(TorchEager):
    name = "toyrt"
    description = "toy runtime: torch eager under another name"


class ToyOrt(OnnxRuntime):
    name = "toyort"
    description = "toy runtime: ONNX Runtime under another name"


# The toy ONNX runtime quantizes the way ONNX Runtime does: a plug-in target takes part in quantization.
QUANTIZER = Quantizer("toyort", "int8-dynamic", Support(True, "toy: ONNX Runtime dynamic int8", ("onnxruntime",)),
                      OrtBackend, options=frozenset({"per_channel", "exclude"}))
'''


@pytest.fixture
def toy_plugin(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The toy plug-in installed the way pip installs one: a module and a dist-info with entry points."""
    site = tmp_path_factory.mktemp("site")
    (site / "toyplug.py").write_text(textwrap.dedent(_PLUGIN))
    info = site / "toyplug-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toyplug\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[slimkit.techniques]\ntoyscale = toyplug:TECHNIQUE\n\n"
                                           "[slimkit.targets]\ntoyrt = toyplug:ToyTarget\ntoyort = toyplug:ToyOrt\n\n"
                                           "[slimkit.quantizers]\ntoyort-int8 = toyplug:QUANTIZER\n")
    registries = (TECHNIQUES, TARGETS, QUANTIZERS)
    monkeypatch.syspath_prepend(str(site))
    for registry in registries:
        registry.reload_plugins()
    yield site
    monkeypatch.undo()
    sys.modules.pop("toyplug", None)
    for registry in registries:
        registry.reload_plugins()


def test_toy_plugin_is_registered_and_removed_again(toy_plugin: Path) -> None:
    assert technique("toyscale").description == "toy: scales the logits"
    assert "toyrt" in TARGETS and not TECHNIQUES.broken and not TARGETS.broken and not QUANTIZERS.broken


def test_toy_plugin_shows_in_slimkit_list(toy_plugin: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(toy_plugin), os.environ.get("PYTHONPATH", "")]),
           "COLUMNS": "200"}
    out = subprocess.run([sys.executable, "-m", "slimkit.cli.main", "list"], capture_output=True, text=True,
                         env=env, timeout=120, check=True).stdout
    assert "toyscale" in out and "toy: scales the logits" in out and "toyrt" in out


def test_toy_technique_runs_in_a_recipe_on_the_toy_target(toy_plugin: Path, tmp_path: Path) -> None:
    import slimkit

    recipe = {"steps": [{"type": "toyscale", "data": {"factor": 3.0}}], "targets": ["torch", "toyrt"]}
    report = slimkit.run(recipe, "digits-cnn", out=tmp_path / "run", quick=True)
    ids = {c.id: c for c in report.candidates}
    assert set(ids) == {"toyscale-torch", "unmodified-toyrt", "toyscale-toyrt"}
    for entry in (ids["toyscale-torch"], ids["toyscale-toyrt"]):
        assert entry.measurement.metric == report.baseline.measurement.metric
        assert "logits scaled by 3.0" in entry.notes
    assert ids["toyscale-toyrt"].target == "toyrt"


def test_a_broken_plugin_is_listed_not_fatal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    info = site / "broken-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[slimkit.techniques]\nnope = no_such_module:TECHNIQUE\n")
    monkeypatch.syspath_prepend(str(site))
    try:
        TECHNIQUES.reload_plugins()
        assert "nope" in TECHNIQUES.broken and "ModuleNotFoundError" in TECHNIQUES.broken["nope"]
        assert "quantize" in TECHNIQUES
    finally:
        monkeypatch.undo()
        TECHNIQUES.reload_plugins()


def test_toy_technique_is_drawn_by_a_search(toy_plugin: Path, tmp_path: Path) -> None:
    from slimkit.search import SearchSpace, optimize
    from slimkit.search._references import _identity_params

    space = SearchSpace(targets=("torch",), fuse=(False,), toyscale_factor=(2.0,))
    assert space.recipe({"target": "torch", "toyscale_factor": 2.0}).describe() == "toyscale@torch"
    # Every point scales the logits: the unmodified model is not in this space, so it is measured apart.
    assert _identity_params(space, "torch") is None
    with_off = SearchSpace(targets=("torch",), fuse=(True, False), quant_scheme=("int8-dynamic", "none"))
    assert _identity_params(with_off, "torch") == {"target": "torch", "fuse": False, "quant_scheme": "none"}
    report = optimize("digits-cnn", space=space, trials=1, sampler="grid", out=tmp_path / "s", quick=True,
                      threads=1)
    trials = [c for c in report.candidates if not c.id.startswith("ref:")]
    assert trials and trials[0].recipe[0]["type"] == "toyscale"
    stored = json.loads((tmp_path / "s" / "search.json").read_text())
    assert stored["space"]["toyscale_factor"] == [2.0]


def test_a_plugin_target_quantizes_through_its_registered_quantizer(toy_plugin: Path, tmp_path: Path) -> None:
    import slimkit
    from slimkit.techniques.quantize import matrix_rows

    rows = {(scheme, target): ok for scheme, target, ok, _ in matrix_rows()}
    assert rows["int8-dynamic", "toyort"] and not rows["int8-static", "toyort"]
    report = slimkit.quantize("digits-cnn", "int8-dynamic", "toyort", out=tmp_path / "q", quick=True, threads=1,
                              per_channel=False)
    assert [c.id for c in report.candidates] == ["toyort-fp32", "toyort-int8-dynamic"]
    assert report.extra["quantization"]["engine"] == "toy: ONNX Runtime dynamic int8"
    with pytest.raises(slimkit.SlimkitError, match="registers no int8-static quantizer"):
        slimkit.quantize("digits-cnn", "int8-static", "toyort", out=tmp_path / "s", quick=True)
    with pytest.raises(slimkit.SlimkitError, match="group_size not taken by int8-dynamic on toyort"):
        slimkit.quantize("digits-cnn", "int8-dynamic", "toyort", out=tmp_path / "g", quick=True, group_size=32)
