from __future__ import annotations

from slimkit.pipeline.recipe import Recipe
from slimkit.plugins import config_from_dict
from slimkit.search.ladder import climb, rung


def _recipe() -> Recipe:
    prune = config_from_dict({"type": "prune", "data": {"ratio": 0.5, "recover_epochs": 1}})
    quant = config_from_dict({"type": "quantize", "data": {"scheme": "int8-static", "target": "openvino"}})
    return Recipe((prune, quant), "openvino")


def test_rungs_rewrite_the_recipe_in_order():
    r = _recipe()
    assert rung(r, "ptq", max_drop=0.5) == r
    assert rung(r, "mixed", max_drop=0.5).steps[1].max_drop == 0.5
    qat = rung(r, "qat", max_drop=0.5).steps[1]
    assert qat.qat_epochs > 0 and qat.max_drop is None
    distill = rung(r, "distill", max_drop=0.5)
    assert distill.steps[0].recover == "distill" and distill.steps[1].qat_epochs > 0
    assert rung(Recipe((), "openvino"), "qat", max_drop=0.5) is None  # nothing to recover without quantization
    # A pruned model that already distils for at least as long gains nothing from the distill rung.
    long = config_from_dict({"type": "prune", "data": {"ratio": 0.5, "recover_epochs": 8, "recover": "distill"}})
    assert rung(Recipe((long, r.steps[1]), "openvino"), "distill", max_drop=0.5) is None


def test_rungs_that_do_not_apply_to_the_scheme_are_skipped_not_failed():
    """A pruned + int8-dynamic trial below the floor failed on the QAT rung (int8-static only)."""
    prune = config_from_dict({"type": "prune", "data": {"ratio": 0.5, "recover_epochs": 1}})
    dyn = config_from_dict({"type": "quantize", "data": {"scheme": "int8-dynamic", "target": "onnxruntime"}})
    r = Recipe((prune, dyn), "onnxruntime")
    assert rung(r, "mixed", max_drop=0.5).steps[1].max_drop == 0.5
    assert rung(r, "qat", max_drop=0.5) is None
    distill = rung(r, "distill", max_drop=0.5)  # distillation still applies, with post-training int8-dynamic
    assert distill.steps[0].recover == "distill" and distill.steps[1].qat_epochs == 0
    fp16 = config_from_dict({"type": "quantize", "data": {"scheme": "fp16", "target": "openvino"}})
    assert rung(Recipe((prune, fp16), "openvino"), "mixed", max_drop=0.5) is None


def test_climb_stops_at_the_first_rung_that_meets_the_floor():
    seen = []

    def evaluate(recipe, name):
        seen.append(name)
        return {"ptq": 90.0, "mixed": 95.0, "qat": 99.0, "distill": 99.5}[name]

    _, chosen, history = climb(_recipe(), evaluate, floor=98.0, max_drop=0.5)
    assert chosen == "qat" and seen == ["ptq", "mixed", "qat"]
    assert [h["meets_floor"] for h in history] == [False, False, True]


def test_climb_reports_the_last_rung_when_nothing_meets_the_floor():
    _, chosen, history = climb(_recipe(), lambda r, n: 50.0, floor=98.0, max_drop=0.5)
    assert chosen == "distill" and len(history) == 4


def test_quantization_rungs_are_skipped_when_the_float_model_already_missed():
    seen = []

    def evaluate(recipe, name):
        seen.append(name)
        return {"ptq": 90.0, "distill": 99.0}[name]

    _, chosen, history = climb(_recipe(), evaluate, floor=98.0, max_drop=0.5, float_metric=91.0)
    assert chosen == "distill" and seen == ["ptq", "distill"]
    assert [h.get("skipped") is not None for h in history] == [False, True, True, False]


def test_mixed_rung_spends_only_the_headroom_above_the_floor():
    """A pruned model at 97.07 with floor 97.0 and int8 at 96.94: the mixed rung measures its drop
    from that pruned model, so it gets the 0.07 of headroom (less a margin), not the search's 3 points
    (with those it would keep every layer int8 and miss the floor again)."""
    budgets = {}

    def evaluate(recipe, name):
        budgets[name] = recipe.steps[1].max_drop
        return {"ptq": 96.94, "mixed": 97.01}[name]

    _, chosen, history = climb(_recipe(), evaluate, floor=97.0, max_drop=3.0, float_metric=97.07)
    assert chosen == "mixed" and [h["rung"] for h in history] == ["ptq", "mixed"]
    assert 0.05 < budgets["mixed"] < 0.07
    # Unknown float metric (nothing changed the model before quantization): the search's budget.
    budgets.clear()
    climb(_recipe(), evaluate, floor=97.0, max_drop=0.1)
    assert budgets["mixed"] == 0.1
    # A float model above the unmodified one: never more than the search's budget.
    climb(_recipe(), evaluate, floor=97.0, max_drop=0.1, float_metric=99.0)
    assert budgets["mixed"] == 0.1


def _entry(ms: float, metric: float):  # the parts of an Entry the ladder reads
    from types import SimpleNamespace as NS

    return NS(measurement=NS(latency=NS(median=ms), metric=metric, details={}), notes=[])


def test_ladder_is_skipped_where_quantization_does_not_make_the_model_faster(tmp_path, monkeypatch):
    """int8 slower than float on this target (a CPU without VNNI): no rung can pay, so none runs; the
    float twin is measured now, on the same target, as the reference."""
    from types import SimpleNamespace as NS

    from slimkit.search import _objective as study  # the trial's module: _climb looks its helpers up there

    measured, timed = [], []

    def evaluate(task, recipe, workdir, threads, **kw):
        measured.append(recipe.describe())
        return _entry(5.0, 99.0)

    def time_recipe(task, recipe, workdir, threads, **kw):  # the float twin: timed, not scored
        timed.append(recipe.describe())
        return 5.0

    monkeypatch.setattr(study, "evaluate_recipe", evaluate)
    monkeypatch.setattr(study, "time_recipe", time_recipe)
    settings = {"threads": 1, "quick": True, "metric_floor": 98.0, "max_drop": 0.5, "out": str(tmp_path)}
    slow = _entry(6.0, 90.0)
    got = study._climb(None, _recipe(), slow, tmp_path, settings, NS(number=3), lambda _m: None)
    assert got is slow and timed == ["prune@openvino"] and measured == []
    assert got.measurement.details["ladder"][0]["rung"] == "all"
    assert "no faster" in got.measurement.details["ladder"][0]["skipped"]
    assert any("float recipe dominates" in n for n in got.notes)  # said in the report, not only in details
    assert not (tmp_path / "float-reference").exists()  # the reference leaves no artifact behind

    measured.clear()
    fast = _entry(4.0, 90.0)  # int8 faster than float: the ladder climbs and keeps the first rung that meets
    got = study._climb(None, _recipe(), fast, tmp_path, settings, NS(number=4), lambda _m: None)
    assert timed[1] == "prune@openvino" and len(measured) == 1
    assert [h["rung"] for h in got.measurement.details["ladder"]] == ["ptq", "mixed"]
