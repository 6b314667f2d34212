"""The joint search on a tiny task: constraints, the never-slower guard, resume, two workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import types

import pytest

from slimkit.errors import UsageError
from slimkit.measure.latency import Latency
from slimkit.search import SearchSpace, optimize

optuna = pytest.importorskip("optuna")

SPACE = SearchSpace(targets=("torch", "onnxruntime"), fuse=(False, True))


def test_grid_search_covers_the_space_and_picks_a_valid_best(tmp_path):
    report = optimize("digits-cnn", space=SPACE, trials=4, sampler="grid", out=tmp_path, quick=True, threads=1)
    recipes = {c.id.split(":")[1] for c in report.candidates}
    assert recipes == {"float@torch", "fuse@torch", "float@onnxruntime", "fuse@onnxruntime"}
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["schema_version"] == 2 and data["search"]["trials_finished"] == 4
    base = report.baseline
    if report.best is not None:
        best = report.entry(report.best)
        ref = report.entry(best.float_reference) if best.float_reference else None
        assert best.meets_constraints
        if best.speedup:  # chosen by its paired figures: faster than the baseline and its reference in turns
            assert best.speedup["value"] > 1.0
            assert ref is None or ref is best or best.speedup["vs_float"]["value"] > 1.0
        else:
            assert best.latency_ms < base.latency_ms
            assert ref is None or ref is best or best.latency_ms < ref.latency_ms
        assert (tmp_path / "best").is_dir()
        if best.target == "onnxruntime":  # re-timed in turns with the baseline at the end
            retimed = data["search"]["retimed"]
            # The re-timed model, or the unmodified one it was found no faster than (which then answers).
            assert best.id in (retimed["best"], retimed.get("reference")) and retimed["speedup"] > 0
            assert best.id == retimed["best"] or retimed["vs_reference"] <= 1.0
            assert any(n.startswith("timed in turns with the baseline") for n in best.notes)
    assert any(c.pareto for c in report.entries)
    assert set(data["pareto_metric_size"]) <= {e["id"] for e in [data["baseline"], *data["candidates"]]}


def test_impossible_constraint_still_answers_with_the_closest(tmp_path):
    report = optimize("digits-cnn", space=SPACE, trials=2, sampler="random", out=tmp_path, quick=True,
                      threads=1, latency_budget=1e-6)
    assert report.best is None
    closest = report.extra["search"]["closest"]
    assert closest and "latency" in closest["missed"]
    assert not any(c.meets_constraints for c in report.candidates)


def test_samplers_see_each_trials_constraints_without_deprecated_arguments(tmp_path):
    """Optuna >= 5 reads constraints from the trial (set_constraint); passing constraints_func warns."""
    import warnings

    from slimkit.search.study import _sampler

    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        for name in ("tpe", "gp", "nsga2"):
            _sampler(name, SPACE, 0, True)
    optimize("digits-cnn", space=SPACE, trials=2, sampler="tpe", out=tmp_path, quick=True, threads=1,
             latency_budget=1e-6)
    study = optuna.load_study(study_name="slimkit", storage=f"sqlite:///{tmp_path / 'study.db'}")
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert done and all(t.user_attrs["constraints"][1] > 0 for t in done)  # latency budget missed
    if hasattr(optuna.trial.Trial, "set_constraint"):
        assert all(t.constraints["latency"] > 0 for t in done)


def test_bad_arguments_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="nothing to resume"):
        optimize("digits-cnn", resume=True, out=tmp_path / "none")
    with pytest.raises(UsageError, match="single-objective"):
        optimize("digits-cnn", sampler="nsga2", pruner="median", out=tmp_path / "x")
    optimize("digits-cnn", space=SPACE, trials=1, sampler="random", out=tmp_path / "y", quick=True, threads=1)
    with pytest.raises(UsageError, match="already holds a search"):
        optimize("digits-cnn", space=SPACE, trials=1, out=tmp_path / "y")
    # --resume continues the stored search; other settings given with it are errors, not ignored
    with pytest.raises(UsageError, match="max_drop 3.0"):
        optimize("digits-cnn", resume=True, max_drop=3.0, out=tmp_path / "y")
    with pytest.raises(UsageError, match="task 'digits-resnet18'"):
        optimize("digits-resnet18", resume=True, out=tmp_path / "y")
    with pytest.raises(UsageError, match="sampler 'tpe' \\(stored: 'random'\\); pruner 'median'"):
        optimize("digits-cnn", resume=True, sampler="tpe", pruner="median", out=tmp_path / "y")


def _cli(out, *extra):
    space = out.parent / "space.json"
    space.write_text(json.dumps({"targets": ["torch", "onnxruntime"], "fuse": [False, True]}))
    return [sys.executable, "-m", "slimkit.cli.main", "optimize", "--task", "digits-cnn", "--space", str(space),
            "--sampler", "random", "--threads", "1", "--quick", "--out", str(out), *extra]


def _finished(out, *, polling: bool = False) -> int:
    try:
        study = optuna.load_study(study_name="slimkit", storage=f"sqlite:///{(out / 'study.db').resolve()}")
    except Exception:
        # While the search process is still creating the database (tables, schema version, study),
        # a reader can see it half-made; only a poll may treat that as "nothing finished yet".
        if polling:
            return 0
        raise
    return sum(t.state.name == "COMPLETE" for t in study.trials)


def test_resume_fails_only_trials_whose_process_is_gone(tmp_path):
    """A --resume beside a live worker (here or on another host) must not fail the trial that worker
    is running: it would throw its result away when the worker finishes."""
    import socket

    from slimkit.search.study import _mark_interrupted

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", directions=["maximize", "minimize"])
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    owners = [(socket.gethostname(), int(gone.stdout)), (socket.gethostname(), os.getppid()), ("elsewhere", 1)]
    for host, pid in owners:
        trial = study.ask()
        trial.set_user_attr("host", host)
        trial.set_user_attr("pid", pid)
    assert _mark_interrupted(study) == (1, 2)
    states = [t.state.name for t in study.trials]
    assert states == ["FAIL", "RUNNING", "RUNNING"]
    assert "interrupted" in study.trials[0].user_attrs["error"]


def test_two_local_workers_share_one_study(tmp_path):
    out = tmp_path / "run"
    result = subprocess.run(_cli(out, "--trials", "4", "--workers", "2"), capture_output=True, text=True,
                            timeout=400, check=False)
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="slimkit", storage=f"sqlite:///{(out / 'study.db').resolve()}")
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(done) >= 4
    workers = {t.user_attrs.get("pid") for t in done}
    assert len(workers) == 2, workers


def test_trials_sharing_model_steps_reuse_them(tmp_path):
    from slimkit.search import _trial

    _trial._prefix_cache.clear()
    space = SearchSpace(targets=("onnxruntime",), fuse=(False,), prune_ratio=(0.5,), recover_epochs=1,
                        recover="distill", quant_scheme=("none", "int8-static"))
    report = optimize("digits-cnn", space=space, trials=2, sampler="grid", out=tmp_path, quick=True, threads=1,
                      max_drop=100.0)
    reused = [c.measurement.details.get("steps", {}).get("reused_model_steps") for c in report.candidates
              if not c.id.startswith("ref:")]  # the unmodified model, measured as the never-slower reference
    assert sorted(map(bool, reused)) == [False, True]
    prune_steps = [s for c in report.candidates for s in c.recipe if s["type"] == "prune"]
    assert all(s["data"]["recover"] == "distill" for s in prune_steps)


def test_time_recipe_times_the_float_twin_without_scoring_it(tmp_path, monkeypatch):
    """The ladder's float reference: the cached model steps, one deployment, batch-1 timing only."""
    from slimkit.measure import measure
    from slimkit.pipeline.recipe import Recipe
    from slimkit.search import _trial
    from slimkit.tasks import load_task
    from slimkit.techniques.prune import PruneConfig

    task = load_task("digits-cnn")
    recipe = Recipe((PruneConfig(ratio=0.5, recover_epochs=0),), "onnxruntime")
    monkeypatch.setattr(measure, "evaluate_deployed", lambda *a: pytest.fail("the evaluation set was scored"))
    ms = _trial.time_recipe(task, recipe, tmp_path, 1, quick=True)
    assert 0 < ms < 1000 and (tmp_path / "model.onnx").exists()


def test_space_carries_pruning_settings_into_the_recipe():
    from slimkit.search import SearchSpace

    space = SearchSpace.from_dict({"targets": ["openvino"], "fuse": [False], "prune_ratio": [0.4],
                                   "prune_criterion": ["activation"], "recover_epochs": 3, "recover": "distill",
                                   "recover_lr": 2e-4, "round_to": 16, "prune_scope": "global",
                                   "prune_head_ratio": [0.25]})
    (step,) = space.recipe({"target": "openvino", "prune_ratio": 0.4, "prune_criterion": "activation",
                            "prune_head_ratio": 0.25}).steps
    assert (step.ratio, step.criterion, step.scope, step.round_to) == (0.4, "activation", "global", 16)
    assert (step.head_ratio, step.ffn_ratio) == (0.25, None)  # FFN neurons follow the ratio
    assert (step.recover, step.recover_epochs, step.lr) == ("distill", 3, 2e-4)


def test_pruning_progress_reaches_the_search_log(tmp_path, monkeypatch):
    from slimkit.search import SearchSpace, _workers

    lines: list[str] = []
    monkeypatch.setattr(_workers, "_log", lines.append)  # the trials' console log
    space = SearchSpace(targets=("torch",), fuse=(False,), prune_ratio=(0.5,), recover_epochs=1)
    optimize("digits-cnn", space=space, trials=1, sampler="grid", out=tmp_path, quick=True, threads=1,
             progress=lambda _m: None)
    assert any(line.startswith("trial 0: recovery epoch 1/1") for line in lines), lines


def test_a_bad_space_value_is_a_usage_error_before_any_work():
    from slimkit.search import SearchSpace

    with pytest.raises(UsageError, match="scope"):
        SearchSpace.from_dict({"prune_ratio": [0.5], "prune_scope": "everywhere"})
    with pytest.raises(UsageError, match="criterion"):
        SearchSpace(prune_ratio=(0.0, 0.5), prune_criterion=("l2", "loudness"))
    with pytest.raises(UsageError, match="head_ratio"):
        SearchSpace(prune_ratio=(0.5,), prune_head_ratio=(1.5,))


def _entry(entry_id, target, ms, artifact=None, reference=None):
    from slimkit.report.schema import Entry

    return Entry.from_dict({
        "id": entry_id, "recipe": [], "target": target, "metric": {"name": "accuracy", "value": 99.0},
        "latency_ms": {"batch": 1, "median": ms, "p90": ms, "ci95": [ms, ms]},
        "throughput": {"batch": 8, "items_per_s": 1.0}, "size_bytes": 1, "peak_memory_bytes": 1,
        "params": 1, "macs": 1, "artifact": artifact, "float_reference": reference})


def test_the_paired_figure_flags_a_table_whose_baseline_was_timed_on_a_busier_machine():
    """The baseline timed at 40 ms while the machine was busier, 27.5 ms in turns: the table's 4.0x is
    corrected to the paired 2.75x, and the note says which figure to trust."""
    from slimkit.report.schema import Report
    from slimkit.search._retime import describe_pairing

    report = Report("digits-cnn", "test", {}, _entry("baseline", "torch", 40.0))
    report.candidates = [_entry("t0", "onnxruntime", 12.0, "m.onnx"),
                         _entry("t1", "onnxruntime", 10.0, "m.onnx", reference="t0")]
    report.best = "t1"
    report.entry("t1").speedup = {"value": 2.75, "ci95": [2.6, 2.9], "ms": 10.0, "baseline_ms": 27.5,
                                  "method": "paired", "vs_float": {"value": 1.2, "ci95": [1.1, 1.3], "reference": "t0"}}
    idle = {"other_load_cores": 0.0, "busy": False}
    result = describe_pairing(report, idle)
    assert result["speedup"] == 2.75 and result["speedup_in_table"] == 4.0 and result["vs_reference"] == 1.2
    [note] = report.entry("t1").notes
    assert "2.75x (95% CI 2.60-2.90)" in note and "machine's speed changed" in note
    report.baseline.measurement.latency = Latency.from_samples([110.0], 1)  # 11x in the table, 2.75x paired
    report.entry("t1").notes.clear()
    describe_pairing(report, idle)
    [note] = report.entry("t1").notes
    assert "one of those was disturbed" in note and "trust this figure" not in note
    report.entry("t1").notes.clear()
    assert describe_pairing(report, {"other_load_cores": 1.2, "busy": True})["other_load_cores"] == 1.2
    [note] = report.entry("t1").notes
    assert "unreliable" in note and "trust this figure" not in note
    report.entry("t1").speedup = None  # not paired (no artifact to load again): no figure to describe
    assert describe_pairing(report, idle) is None


def test_a_steps_note_reaches_the_trials_notes(tmp_path):
    """Pruning's own note (here: round_to moved the asked removal) was kept in details only."""
    from slimkit.pipeline.recipe import Recipe
    from slimkit.search._trial import evaluate_recipe
    from slimkit.tasks import load_task
    from slimkit.techniques.prune import PruneConfig

    recipe = Recipe((PruneConfig(ratio=0.3, round_to=64, recover_epochs=0),), "torch")
    entry = evaluate_recipe(load_task("digits-cnn"), recipe, tmp_path, 1, entry_id="t0", quick=True)
    assert any(n.startswith("round_to=64 moved the removal") for n in entry.notes)
    assert entry.measurement.details["steps"]["prune"]["note"] in entry.notes


def test_pruning_recovery_reports_each_epoch_and_the_pruner_can_stop_it(tmp_path):
    """--pruner used to change the objective only: no trial ever reported an intermediate value."""
    from slimkit.pipeline.recipe import Recipe
    from slimkit.search._trial import evaluate_recipe
    from slimkit.search.study import _early_stop
    from slimkit.tasks import load_task
    from slimkit.techniques.prune import PruneConfig

    seen = []
    recipe = Recipe((PruneConfig(ratio=0.5, recover_epochs=2),), "torch")
    evaluate_recipe(load_task("digits-cnn"), recipe, tmp_path / "a", 1, entry_id="t0", quick=True,
                    on_validation=lambda *a: seen.append(a))
    assert [e for e, _, _ in seen] == [1, 2] and all(0 < left < 0.5 for _, _, left in seen)

    class Trial:  # the two calls an Optuna trial answers for a pruner
        number, attrs, reported = 3, {}, []

        def report(self, value, step):
            self.reported.append((step, value))

        def should_prune(self):
            return True

        def set_user_attr(self, key, value):
            self.attrs[key] = value

    trial = Trial()
    stop = _early_stop(trial, floor=99.0, say=lambda _m: None)
    with pytest.raises(optuna.TrialPruned, match="recovery epoch 1"):
        evaluate_recipe(load_task("digits-cnn"), recipe, tmp_path / "b", 1, entry_id="t1", quick=True,
                        metric_floor=99.0, on_validation=stop)
    (step, value), = trial.reported
    assert step == 1 and value > 0 and "lags the other trials" in trial.attrs["stopped_early"]


def test_a_best_the_paired_timing_finds_no_faster_than_the_unmodified_model_gives_way_to_it(tmp_path):
    from slimkit.pipeline.paired import _choose_best
    from tests.report.test_report import _entry, _report

    report = _report({"search": {}}, [_entry("t0:float@onnxruntime", 2.0, 98.5, target="onnxruntime"),
                                      _entry("t1:fuse@onnxruntime", 1.98, 98.5, target="onnxruntime")])
    report.best = "t1:fuse@onnxruntime"
    report.entry("t1:fuse@onnxruntime").float_reference = "t0:float@onnxruntime"
    report.entry("t0:float@onnxruntime").speedup = {"value": 5.0, "ci95": [4.9, 5.1]}
    report.entry("t1:fuse@onnxruntime").speedup = {"value": 4.95, "ci95": [4.8, 5.1], "vs_float": {
        "value": 0.99, "ci95": [0.97, 1.01], "reference": "t0:float@onnxruntime"}}
    _choose_best(report)
    assert report.best == "t0:float@onnxruntime"
    assert "best by its paired speed-up" in report.entry("t0:float@onnxruntime").notes[0]


def test_a_point_another_worker_is_measuring_is_waited_for_not_measured_twice():
    """Two --workers drawing one grid point both measured it (and disagreed on which was best)."""
    import socket

    from slimkit.search.study import _finished_twin

    sleeper = subprocess.Popen(["sleep", "30"])  # stands for the other worker's live process
    try:
        params = {"target": "onnxruntime", "fuse": True}
        other = types.SimpleNamespace(number=0, params=params, state=types.SimpleNamespace(name="RUNNING"),
                                      user_attrs={"pid": sleeper.pid, "host": socket.gethostname()})
        polls = []

        def get_trials(deepcopy=False):
            polls.append(1)
            if len(polls) == 3:  # the other worker finishes while this one waits
                other.state.name, other.user_attrs["entry"] = "COMPLETE", {}
            return [other, me]

        me = types.SimpleNamespace(number=1, params=params, study=types.SimpleNamespace(get_trials=get_trials))
        assert _finished_twin(me, params, poll=0.01) is other and len(polls) == 3
    finally:
        sleeper.kill()


def _grid_settings(tmp_path, workers=2):
    space = SearchSpace(targets=("torch", "onnxruntime"), fuse=(False, True), quant_scheme=("none", "int8-static"),
                        prune_ratio=(0.0, 0.3, 0.5), recover_epochs=1)
    return space, {"space": space.to_dict(),
                   "sampler": "grid", "pruner": "none", "seed": 0, "workers": workers,
                   "storage": f"sqlite:///{tmp_path / 'study.db'}"}


def test_grid_workers_and_resumes_draw_each_point_once(tmp_path, monkeypatch):
    """Each --workers process shuffled the grid with its own seed, so two of them drew one point
    twice and left another unmeasured; a resume re-shuffled it again."""
    from slimkit.search.study import _load_study

    space, settings = _grid_settings(tmp_path)
    studies = []
    for pid in (1234, 5678):  # two worker processes
        monkeypatch.setattr(os, "getpid", lambda pid=pid: pid)
        studies.append(_load_study(settings, create=True))
    drawn = []

    def objective(trial):
        drawn.append(tuple(sorted(space.suggest(trial).items())))
        return 1.0, 1.0

    for i in range(12):
        studies[i % 2].optimize(objective, n_trials=1)
    resumed = _load_study(settings, create=False)  # a --resume after 12 of the 24 points
    resumed.optimize(objective, n_trials=12)
    assert len(set(drawn)) == 24 == len(drawn)


def test_an_interrupted_trial_runs_again_and_spends_no_budget(tmp_path):
    from slimkit.search.study import _load_study, _mark_interrupted, _over_budget, _spent

    space, settings = _grid_settings(tmp_path, workers=1)
    study = _load_study(settings, create=True)
    first = study.ask()
    space.suggest(first)
    study.tell(first, (1.0, 1.0))
    killed = study.ask()
    point = space.suggest(killed)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    killed.set_user_attr("pid", int(gone.stdout))
    assert _mark_interrupted(study) == (1, 0) and _spent(study) == 1
    again = study.ask()
    assert space.suggest(again) == point  # the interrupted point comes first
    assert not _over_budget(again, 2)
    extra = study.ask()  # a second worker starting while `again` runs: the budget of 2 is taken
    assert _over_budget(extra, 2) and not _over_budget(extra, 3)


def test_a_space_without_the_float_model_still_has_its_never_slower_reference(tmp_path):
    """A space of int8 only named an int8 model best that was 3x slower than float on its target."""
    space = SearchSpace(targets=("onnxruntime",), fuse=(True,), quant_scheme=("int8-dynamic",))
    report = optimize("digits-cnn", space=space, trials=1, sampler="grid", out=tmp_path, quick=True, threads=1)
    ref = report.entry("ref:float@onnxruntime")
    trial = next(c for c in report.candidates if c.id.startswith("t0:"))
    assert trial.float_reference == ref.id and report.extra["search"]["trials_finished"] == 1
    if report.best == trial.id:  # faster than float on its target: in turns where it was timed so
        assert trial.speedup["vs_float"]["value"] > 1.0 if trial.speedup else trial.latency_ms < ref.latency_ms
    else:
        assert any("never reported as best" in n or "not the best" in n for n in trial.notes) \
            or not trial.meets_constraints
    if report.best == ref.id:
        assert (tmp_path / "best" / "model.onnx").exists()


def test_a_point_whose_quantization_the_target_does_not_offer_is_answered_at_once(tmp_path):
    space = SearchSpace(targets=("torch", "onnxruntime"), fuse=(False,), quant_scheme=("int8-static",))
    report = optimize("digits-cnn", space=space, trials=2, sampler="grid", out=tmp_path, quick=True, threads=1)
    search = report.extra["search"]
    skipped = search["points_skipped"]
    assert not search["trials_failed"] and len(skipped) == 1  # skipped, not failed
    assert skipped[0]["why"].startswith("scheme 'int8-static' is not offered")
    assert not (tmp_path / "trials" / f"{skipped[0]['trial']:04d}").exists()  # nothing was run for it
    assert search["trials_finished"] == 1  # and it spent none of the 2 trials: the other point ran
    assert "skipped at no cost" in (tmp_path / "report.md").read_text()


def test_a_search_on_a_task_file_resumes_from_another_folder(tmp_path, monkeypatch):
    """The task string was stored as typed: `--task ../t.py:make --resume` from a subfolder was refused."""
    from slimkit.search.study import _check_resume_matches
    from slimkit.tasks._loader import task_key

    (tmp_path / "t.py").write_text("")
    monkeypatch.chdir(tmp_path)
    key = task_key("t.py:make")
    assert key == f"{tmp_path.resolve() / 't.py'}:make" and task_key("digits-cnn") == "digits-cnn"
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    settings = {"task": key, "max_drop": 1.0, "latency_budget": None, "size_budget": None,
                "space": {"targets": ["torch"]}, "sampler": "tpe", "pruner": "none", "out": "run"}
    _check_resume_matches(settings, task=task_key("../t.py:make"))
    with pytest.raises(UsageError, match="differ: task"):
        _check_resume_matches(settings, task="digits-cnn")


@pytest.mark.parametrize("seed", [0, 1])
def test_the_unmodified_model_is_measured_when_the_budget_did_not_draw_it(tmp_path, seed):
    """The space held the float point but one trial drew only int8, 3x slower, and it was named best."""
    space = SearchSpace(targets=("onnxruntime",), fuse=(False,), quant_scheme=("none", "int8-dynamic"))
    report = optimize("digits-cnn", space=space, trials=1, sampler="grid", out=tmp_path, quick=True, threads=1,
                      seed=seed)
    floats = [c for c in report.candidates if len(c.recipe) == 1 and c.target == "onnxruntime"]
    assert len(floats) == 1
    assert all(c.float_reference == floats[0].id for c in report.candidates)


def test_a_calibration_dimension_applies_to_the_static_points_only():
    """int8-dynamic points of a space with a calibration dimension failed with a bare "fail"."""
    space = SearchSpace(targets=("onnxruntime",), quant_scheme=("int8-dynamic", "int8-static"),
                        calibration=("minmax",))
    dyn = space.recipe({"target": "onnxruntime", "quant_scheme": "int8-dynamic", "calibration": "minmax"})
    static = space.recipe({"target": "onnxruntime", "quant_scheme": "int8-static", "calibration": "minmax"})
    assert dyn.steps[-1].calibration is None and static.steps[-1].calibration == "minmax"


def test_the_unmodified_model_on_each_target_spends_no_trial(tmp_path):
    """--trials counts the trials drawn: the references queued first (the unmodified model on each
    target, the never-slower guard) are measured besides."""
    report = optimize("digits-cnn", space=SPACE, trials=1, sampler="random", out=tmp_path, quick=True, threads=1)
    assert sorted(c.id.split(":")[1] for c in report.candidates[:2]) == ["float@onnxruntime", "float@torch"]
    study = optuna.load_study(study_name="slimkit", storage=f"sqlite:///{tmp_path / 'study.db'}")
    drawn = [t for t in study.trials if not t.user_attrs.get("reference")]
    assert len(study.trials) == 3 and len(drawn) == 1 and drawn[0].state.name == "COMPLETE"


def _grid_cli(out, *extra):
    space = out.parent / "grid.json"
    space.write_text(json.dumps({"targets": ["torch", "onnxruntime"], "fuse": [False, True]}))
    return [sys.executable, "-m", "slimkit.cli.main", "optimize", "--task", "digits-cnn", "--space", str(space),
            "--sampler", "grid", "--threads", "1", "--quick", "--trials", "4", "--out", str(out), *extra]


def _points(out) -> list[tuple]:
    """The measured points (each grid point's params), one per finished trial that ran its recipe."""
    study = optuna.load_study(study_name="slimkit", storage=f"sqlite:///{(out / 'study.db').resolve()}")
    return sorted(tuple(sorted(t.params.items())) for t in study.trials
                  if t.state.name == "COMPLETE" and "duplicate_of" not in t.user_attrs and "entry" in t.user_attrs)


# Two workers per signal run with `-m slow` (the default run keeps to its time; the PostgreSQL test kills
# one of two search processes in it).
@pytest.mark.parametrize("workers", [1, pytest.param(2, marks=pytest.mark.slow)])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["int", "term", "kill"])
def test_a_stopped_search_resumes_with_every_point_measured_once(tmp_path, sig, workers):
    """Whatever stops it (Ctrl-C, a scheduler's SIGTERM, SIGKILL), with one worker or two: no finished
    trial lost, no point measured twice, none left after one --resume; a polite stop leaves a partial report."""
    out = tmp_path / "run"
    proc = subprocess.Popen(_grid_cli(out, "--workers", str(workers)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        # Mid-trial: a trial folder exists for a trial that has not finished yet.
        started = len(list((out / "trials").glob("0*"))) if (out / "trials").exists() else 0
        if started >= 2 and started > _finished(out, polling=True):
            break
        time.sleep(0.2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    if sig != signal.SIGKILL and proc.returncode != 0:  # it may have finished before the signal landed
        assert "Traceback" not in err, err[-2000:]
        report = json.loads((out / "report.json").read_text())
        assert report["search"]["partial"] is True
        assert "Partial" in (out / "report.md").read_text()
    before = _points(out)
    result = subprocess.run(_grid_cli(out, "--resume"), capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    after = _points(out)
    assert set(before) <= set(after)  # no finished trial lost
    assert len(after) == len(set(after)) == 4  # every grid point measured, and once
    report = json.loads((out / "report.json").read_text())
    assert not report["search"].get("partial") and report["search"]["trials_finished"] == 4


def test_a_copied_run_resumes_in_place_and_damaged_files_are_named(tmp_path, monkeypatch):
    import shutil

    from slimkit.errors import SlimkitError

    first = tmp_path / "k2"
    optimize("digits-cnn", space=SPACE, trials=1, sampler="grid", out=first, quick=True, threads=1)
    copy = tmp_path / "k2copy"
    shutil.copytree(first, copy)
    before = (first / "study.db").read_bytes()
    monkeypatch.chdir(tmp_path / "k2copy")  # resumed from another folder, by a relative path
    optimize("digits-cnn", resume=True, trials=2, out=".", quick=True, threads=1)
    assert (first / "study.db").read_bytes() == before and not (first / "trials" / "0001").exists()
    assert (copy / "trials" / "0001").is_dir()
    assert json.loads((copy / "report.json").read_text())["search"]["trials_finished"] == 2
    monkeypatch.chdir(tmp_path)
    for name, damage, message in (("study.db", b"SQLite format 3\x00" + b"\x01" * 500, "study .* cannot be read"),
                                  ("search.json", b"{garbage", "settings .* cannot be read"),
                                  ("search.json", b'{"space": 3}', "settings .* damaged"),
                                  ("baseline.json", None, "baseline .* is missing")):
        broken = tmp_path / f"broken-{name}"
        shutil.rmtree(broken, ignore_errors=True)
        shutil.copytree(first, broken)
        (broken / name).unlink() if damage is None else (broken / name).write_bytes(damage)
        with pytest.raises(SlimkitError, match=message) as err:
            optimize("digits-cnn", resume=True, trials=2, out=broken, quick=True, threads=1)
        assert "another --out" in err.value.hint


def test_a_failed_trial_carries_its_real_error(tmp_path, monkeypatch):
    """A library failing inside a technique was stored by Optuna as just "fail"."""
    from slimkit.search import _objective

    real = _objective.evaluate_recipe

    def flaky(task, recipe, *args, **kwargs):
        if recipe.target == "onnxruntime":
            raise RuntimeError("onnx graph broke\nsecond line")
        return real(task, recipe, *args, **kwargs)

    monkeypatch.setattr(_objective, "evaluate_recipe", flaky)
    space = SearchSpace(targets=("torch", "onnxruntime"), fuse=(False,))
    report = optimize("digits-cnn", space=space, trials=2, sampler="grid", out=tmp_path, quick=True, threads=1)
    [failed] = report.extra["search"]["trials_failed"]
    assert failed["error"] == "RuntimeError: onnx graph broke"
