from __future__ import annotations

import json

import pytest

from slimkit.api.tune import check_space, tune
from slimkit.errors import UsageError

pytest.importorskip("optuna")


def test_tune_writes_best_params_and_trial_table(tmp_path):
    result = tune("digits-cnn", {"lr": [0.003, 0.0003], "epochs": [2]}, trials=2, sampler="grid", pruner="none",
                  out=tmp_path)
    assert set(result["best_params"]) == {"lr", "epochs"}
    assert len(result["trials"]) == 2 and all(r["state"] == "complete" for r in result["trials"])
    saved = json.loads((tmp_path / "tune.json").read_text())
    assert saved["best_params"] == result["best_params"]
    assert (tmp_path / "best_params.yaml").read_text().startswith(("lr", "epochs"))
    # The winner is measured on the evaluation set, which tuning never saw.
    assert 0 <= result["eval_metric_of_best"] <= 100


def test_pruner_stops_poor_trials(tmp_path):
    # A learning rate of 1e-9 cannot learn: once three trials finished, the median pruner stops it
    # after its first epoch (the sampler is seeded, so this run is deterministic).
    space = {"lr": [3e-3, 1e-9], "epochs": [3]}
    result = tune("digits-cnn", space, trials=8, sampler="random", pruner="median", out=tmp_path)
    pruned = [r for r in result["trials"] if r["state"] == "pruned"]
    assert pruned and all(r["params"]["lr"] == 1e-9 and r["epochs_run"] < 3 for r in pruned)
    # A stopped trial's score after fewer epochs is kept apart from the finished trials' scores.
    assert all(r["validation"] is None and r["partial_validation"] is not None for r in pruned)
    assert result["best_params"]["lr"] == 3e-3


def test_a_trial_that_ran_every_epoch_is_never_pruned(tmp_path):
    """It was: the pruner's check after the last epoch threw a finished trial's result away."""
    space = {"lr": [3e-3, 1e-9], "epochs": [1]}
    result = tune("digits-cnn", space, trials=6, sampler="random", pruner="median", out=tmp_path)
    assert all(r["state"] == "complete" for r in result["trials"])


@pytest.mark.parametrize("space", [{}, {"learning_rate": [0.1]}, {"lr": "fast"}, {"lr": {"low": 1}},
                                   {"lr": {"low": 0.01, "hgih": 0.1}}, {"device": ["cpu"]}, {"epochs": [0]}])
def test_bad_space_is_a_usage_error(space):
    with pytest.raises(UsageError):
        check_space(space)


def test_malformed_space_file_is_a_usage_error(tmp_path):
    from slimkit.api.tune import load_space

    bad = tmp_path / "space.yaml"
    bad.write_text("lr: [0.1,\n")
    with pytest.raises(UsageError, match="not valid YAML/JSON"):
        load_space(bad)
    with pytest.raises(UsageError, match="not found"):
        load_space(tmp_path / "missing.yaml")
