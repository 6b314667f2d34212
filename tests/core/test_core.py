from __future__ import annotations

import json

import pytest
import torch

from slimkit.core.data import Batches, batch_of, primary_output
from slimkit.core.files import atomic_path, atomic_write_json
from slimkit.core.registry import Registry
from slimkit.core.task import as_inputs, run_model
from slimkit.errors import ShapeError, UsageError
from slimkit.tasks import load_task


def test_batches_shuffle_is_seeded_and_covers_everything():
    data = Batches({"x": torch.arange(10).float()}, torch.arange(10), batch_size=3, shuffle=True, seed=1)
    first = torch.cat([t for _, t in data])
    second = torch.cat([t for _, t in data])
    assert sorted(first.tolist()) == list(range(10))
    assert first.tolist() != second.tolist()  # a new order each epoch
    again = Batches({"x": torch.arange(10).float()}, torch.arange(10), batch_size=3, shuffle=True, seed=1)
    assert torch.cat([t for _, t in again]).tolist() == first.tolist()


def test_batch_of_and_primary_output():
    assert batch_of({"x": torch.zeros(1, 3)}, 5)["x"].shape == (5, 3)
    assert primary_output((torch.ones(1), torch.zeros(1))).item() == 1.0
    assert primary_output({"logits": torch.ones(2)}).shape == (2,)


def test_registry_suggests_names():
    r: Registry[int] = Registry("thing")
    r.register("alpha", 1)
    with pytest.raises(UsageError, match="did you mean 'alpha'"):
        r.get("alpah")


def test_config_choice_error_lists_the_allowed_values():
    from slimkit.techniques.prune import PruneConfig

    with pytest.raises(UsageError, match="'scope' must be one of 'uniform', 'global', not 'everywhere'"):
        PruneConfig(scope="everywhere")  # type: ignore[arg-type]


def test_as_inputs_names_positional_arguments():
    assert list(as_inputs(torch.nn.Conv2d(1, 1, 1), torch.zeros(1, 1, 2, 2))) == ["input"]


def test_run_model_shape_error_names_shapes():
    with pytest.raises(ShapeError, match=r"\[1, 5\]"):
        run_model(torch.nn.Linear(4, 2), {"input": torch.zeros(1, 5)})


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "a.json"
    atomic_write_json(target, {"ok": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert json.loads(target.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_digits_cnn_task_and_cache(monkeypatch):
    task = load_task("digits-cnn")
    model = task.build_model()
    assert task.example_inputs["x"].shape == (1, 1, 8, 8)
    assert sum(t.shape[0] for _, t in task.eval_data) == 360
    from slimkit.train.engine import evaluate_torch

    assert evaluate_torch(model, task.eval_data, task.metric) >= 95.0
    # The second load reuses the cached weights instead of training again.
    import slimkit.tasks.digits as digits

    monkeypatch.setattr(digits, "fit", lambda *a, **k: pytest.fail("retrained despite the cache"))
    again = load_task("digits-cnn").build_model()
    pairs = zip(model.state_dict().values(), again.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    # build_model never hands out the same object twice: techniques cannot change the baseline.
    assert task.build_model() is not task.build_model()


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "meta-garbage"])
def test_a_damaged_cache_entry_is_rebuilt(tmp_path, monkeypatch, damage: str) -> None:
    from torch import nn

    from slimkit.core.cache import load_weights, save_weights

    monkeypatch.setenv("SLIMKIT_CACHE", str(tmp_path))
    model = nn.Linear(4, 3)
    weights = save_weights(model, "k", {"metric": 1.0})
    if damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:60])
    elif damage == "garbage":
        weights.write_bytes(b"\xff" * 500)
    elif damage == "empty":
        weights.write_bytes(b"")
    else:
        (tmp_path / "k.json").write_text("{no")
    assert load_weights(nn.Linear(4, 3), "k") is None  # retrained by the caller, never a traceback
    save_weights(model, "k", {"metric": 1.0})
    assert load_weights(nn.Linear(4, 3), "k") == {"metric": 1.0}


@pytest.mark.slow
def test_digits_resnet18_baseline_reaches_97():
    from slimkit.train.engine import evaluate_torch

    task = load_task("digits-resnet18")
    assert evaluate_torch(task.build_model(), task.eval_data, task.metric) >= 97.0


def test_trimmed_batches_group_lengths_and_cover_every_item():
    import torch

    from slimkit.core.data import Batches

    mask = torch.zeros(64, 16, dtype=torch.long)
    for i in range(64):
        mask[i, : 1 + i % 16] = 1
    data = Batches({"attention_mask": mask, "ids": mask * 7}, torch.arange(64), 8, shuffle=True,
                   trim_to="attention_mask")
    seen, widths = [], []
    for inputs, targets in data:
        seen += targets.tolist()
        widths.append(inputs["ids"].shape[1])
        assert int(inputs["attention_mask"].sum(1).max()) == inputs["ids"].shape[1]
    assert sorted(seen) == list(range(64))
    assert sum(widths) < 8 * 16  # grouped by length: far less padding than random batches
    train, val = data.holdout(0.25)
    assert train.num_items == 48 and val.num_items == 16 and train.trim_to == "attention_mask"


def test_a_model_whose_forward_lacks_the_input_names_gets_a_clear_error():
    import torch
    from torch import nn

    from slimkit.core.task import run_model
    from slimkit.errors import TaskError

    with pytest.raises(TaskError, match=r"does not take the task's input\(s\) by name \(x\)"):
        run_model(nn.Sequential(nn.Linear(3, 2)), {"x": torch.zeros(1, 3)})
