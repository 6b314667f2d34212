"""Recipes are what users keep: every run writes its resolved recipe.yaml, and `slimkit run` repeats it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import slimkit
from slimkit.cli.main import main
from slimkit.errors import UsageError
from slimkit.pipeline import RunRecipe


def test_a_search_best_and_its_trials_rerun_to_the_same_metric(tmp_path: Path) -> None:
    from slimkit.search import SearchSpace, optimize

    space = SearchSpace(targets=("onnxruntime",), fuse=(False,), prune_ratio=(0.3,), recover_epochs=1,
                        quant_scheme=("none", "int8-static"))
    report = optimize("digits-cnn", space=space, trials=2, sampler="grid", out=tmp_path / "s", quick=True,
                      threads=1, max_drop=2.0, seed=3)
    def steps(entry):  # a search entry's recipe ends with its target as a pseudo-step
        return [s for s in entry.recipe if s["type"] != "target"]

    best = report.entry(report.best)
    written = yaml.safe_load((tmp_path / "s" / "best" / "recipe.yaml").read_text())
    assert written["steps"] == steps(best) and written["targets"] == [best.target] and written["seed"] == 3
    again = slimkit.run(tmp_path / "s" / "best", "digits-cnn", out=tmp_path / "again", quick=True, threads=1)
    rerun = [c for c in again.candidates if c.target == best.target and c.recipe == steps(best)]
    assert rerun and rerun[0].measurement.metric == best.measurement.metric
    # Every trial's recipe, not only the best's: pruning + recovery + int8 comes out the same.
    trial = next(c for c in report.candidates if [s["type"] for s in steps(c)] == ["prune", "quantize"])
    plan = {"steps": steps(trial), "targets": [trial.target], "max_drop": 2.0, "seed": 3}
    same = slimkit.run(plan, "digits-cnn", out=tmp_path / "trial", quick=True, threads=1)
    assert same.entry("prune+quantize-onnxruntime").measurement.metric == trial.measurement.metric


def test_slimkit_run_repeats_a_quantize_run_from_its_recipe(tmp_path: Path) -> None:
    assert main(["quantize", "--task", "digits-cnn", "--scheme", "int8-dynamic", "--target", "onnxruntime",
                 "--quick", "--threads", "1", "--out", str(tmp_path / "q")]) == 0
    first = slimkit.report.schema.Report.from_dict(yaml.safe_load((tmp_path / "q" / "report.json").read_text()))
    assert main(["run", str(tmp_path / "q" / "recipe.yaml"), "--quick", "--threads", "1",
                 "--out", str(tmp_path / "r")]) == 0
    second = slimkit.report.schema.Report.from_dict(yaml.safe_load((tmp_path / "r" / "report.json").read_text()))
    assert (second.entry("quantize-onnxruntime").measurement.metric
            == first.entry("onnxruntime-int8-dynamic").measurement.metric)
    assert yaml.safe_load((tmp_path / "r" / "recipe.yaml").read_text())["command"] == "run"


@pytest.mark.parametrize(("raw", "message"), [
    ({"format": "slimkit-recipe/9", "steps": []}, "format"),
    ({"steps": [], "targets": "onnxruntime,openvino,"}, None),  # one name: refused later as unknown
    ({"steps": [], "targets": []}, "targets"),
    ({"steps": [{"type": "sharpen", "data": {}}]}, "unknown recipe step type 'sharpen'"),
    ({"steps": [{"type": "prune", "data": {"ratio": "half"}}]}, "ratio"),
    ({"steps": "prune"}, "steps"),
    ({"steps": [], "seed": 1.5}, "seed"),
    ({"steps": [], "max_drop": "1"}, "max_drop"),
])
def test_bad_recipes_are_refused_with_what_is_wrong(raw: dict, message: str | None) -> None:
    if message is None:
        assert RunRecipe.from_dict(raw).targets == ("onnxruntime,openvino,",)
        return
    with pytest.raises(UsageError, match=message):
        RunRecipe.from_dict(raw)


def test_run_refusals_leave_nothing_behind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "r.yaml").write_text("steps: []\ntargets: [torch]\n")
    assert main(["run", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "out")]) == 2
    assert "names no task" in capsys.readouterr().err and not (tmp_path / "out").exists()
    assert main(["run", str(tmp_path / "missing.yaml"), "--task", "digits-cnn", "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()
    (tmp_path / "bad.yaml").write_text("steps: [\n")
    assert main(["run", str(tmp_path / "bad.yaml"), "--task", "digits-cnn", "--out", str(tmp_path / "o")]) == 2
    assert main(["run", str(tmp_path / "r.yaml"), "--task", "digits-cnn", "--targets", "torch,nope",
                 "--out", str(tmp_path / "o")]) == 2
    assert "unknown target 'nope'" in capsys.readouterr().err and not (tmp_path / "o").exists()
    # A step some target cannot run is refused before the baseline, not after it.
    (tmp_path / "q.yaml").write_text("steps: [{type: quantize, data: {scheme: int4-weight-only}}]\n"
                                     "targets: [openvino, onnxruntime]\n")
    assert main(["run", str(tmp_path / "q.yaml"), "--task", "digits-cnn", "--out", str(tmp_path / "o")]) == 2
    assert "not offered on target 'onnxruntime'" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_a_recipe_changes_the_model_before_it_deploys_it() -> None:
    from slimkit.pipeline import Recipe
    from slimkit.plugins import config_from_dict

    quant = config_from_dict({"type": "quantize", "data": {"scheme": "int8-dynamic", "target": "onnxruntime"}})
    fuse = config_from_dict({"type": "fuse", "data": {}})
    with pytest.raises(UsageError, match="'fuse' comes after 'quantize'"):
        Recipe((quant, fuse), "onnxruntime")
    with pytest.raises(UsageError, match="deploys once"):
        Recipe((quant, quant), "onnxruntime")
    assert Recipe((fuse, quant), "onnxruntime").describe() == "fuse+quantize@onnxruntime"


def test_recipe_files_refuse_misspelled_keys_and_record_what_reruns_them(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown key.*max_dorp"):
        RunRecipe.from_dict({"steps": [], "max_dorp": 1.0})
    with pytest.raises(UsageError, match="'task' must be a name"):
        RunRecipe.from_dict({"steps": [], "task": 3})
    report = slimkit.benchmark("digits-cnn", ["torch"], out=tmp_path / "b", quick=True, threads=1)
    assert report.command == "slimkit.benchmark(...)"
    written = RunRecipe.load(tmp_path / "b")
    assert written.task == "digits-cnn" and written.command == "bench" and written.extra == {"threads": 1}


@pytest.mark.parametrize(("text", "message"), [
    ("steps: [{type: fuse, data: {conv_bn: [&a [1,1,1,1,1,1,1,1,1,1], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a], "
     "&c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b], &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c], "
     "&e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d], [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]]}}]\n",
     "conv_bn"),  # an alias bomb: a million items when expanded, quoted short, refused at once
    ("steps: " + "[" * 600 + "]" * 600 + "\n", "nests too deeply|must be a list"),
    ("steps: []\nseed: 99999999999999999999999\n", "seed"),
    ("steps: [{type: prune, data: {1: 2}}]\n", "unknown field"),
    ("steps: []\n1: x\nzz: y\n", "unknown key"),
    ("steps: [{type: prune, data: {ratio: 0.5, layer_ratios: [1]}}]\n", "layer_ratios"),
    ("steps: [{type: distill, data: {feature_weight: 1.0, pairs: [1]}}]\n", "pairs"),
    ("steps: [{type: prune, data: {ratio: 0.5, target_macs: .nan}}]\n", "NaN"),
    ("steps: [{type: prune, data: {ratio: 0.5, calibration_batches: -1}}]\n", "calibration_batches"),
    ("steps: [{type: distill, data: {batch_size: 0}}]\n", "batch_size"),
    ("steps: [{type: fuse, version: -5, data: {}}]\n", "version must be a whole number"),
    ("steps: [{type: fuse, version: '1', data: {}}]\n", "version must be a whole number"),
])
def test_hostile_recipe_files_are_refused_quickly_with_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    import re
    import time

    path = tmp_path / "r.yaml"
    path.write_text(text)
    start = time.monotonic()
    with pytest.raises(UsageError) as err:
        RunRecipe.load(path)
    assert time.monotonic() - start < 30 and re.search(message, str(err.value)), str(err.value)[:300]
    assert len(str(err.value)) < 1000


def test_a_huge_recipe_file_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("steps: []\n" + "# padding\n" * 200_000)
    with pytest.raises(UsageError, match="at most 1 MiB"):
        RunRecipe.load(path)


def test_a_refused_run_removes_the_parent_folders_it_made(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text("steps: [{type: sharpen, data: {}}]\n")
    assert main(["run", str(tmp_path / "r.yaml"), "--task", "digits-cnn",
                 "--out", str(tmp_path / "o" / "p" / "q")]) == 2
    assert not (tmp_path / "o").exists()
    with pytest.raises(UsageError):
        slimkit.run(tmp_path / "r.yaml", "digits-cnn", out=tmp_path / "a" / "b")
    assert not (tmp_path / "a").exists()
    with pytest.raises(UsageError, match="seed"):
        slimkit.run({"steps": []}, "digits-cnn", out=tmp_path / "s", seed=2**70)
    with pytest.raises(UsageError, match="out must be a folder path"):
        slimkit.run({"steps": []}, "digits-cnn", out=5)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="targets"):
        slimkit.run({"steps": []}, "digits-cnn", out=tmp_path / "t", targets=5)  # type: ignore[arg-type]
    assert not (tmp_path / "s").exists() and not (tmp_path / "t").exists()
