"""Recovery that fits the model: BatchNorm statistics re-estimated, and never worse than no recovery."""

from __future__ import annotations

import torch
from torch import nn

from slimkit.core.data import Batches
from slimkit.kernels.batchnorm import reestimate
from slimkit.tasks.user import task_from_model
from slimkit.techniques.prune import PruneConfig
from slimkit.techniques.prune._apply import prune_model


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16, momentum=0.01), nn.ReLU(),
                         nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16, momentum=0.01), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4)).eval()


def _task(net: nn.Module):
    x = torch.randn(120, 3, 8, 8) * 3 + 1
    return task_from_model(net, x, metric="cosine")  # a random classifier agrees with itself on one class


def test_pruning_leaves_batchnorm_statistics_of_the_pruned_network() -> None:
    net = _net()
    task = _task(net)
    pruned, _ = prune_model(net, task, PruneConfig(ratio=0.5))
    bn = pruned[4]
    assert bn.num_features < 16
    expected = bn.running_mean.clone()
    reestimate(pruned, task.calibration_data)  # doing it again on the same data changes nothing
    assert torch.allclose(bn.running_mean, expected, atol=1e-5)
    assert bn.momentum == 0.01 and not bn.training


def test_recovery_that_makes_the_model_worse_is_undone() -> None:
    net = _net()
    task = _task(net)
    cfg = PruneConfig(ratio=0.5, recover_epochs=2, lr=50.0)  # a rate that wrecks any model
    pruned, result = prune_model(net, task, cfg)
    rec = result.recovery
    assert rec is not None and rec.check_before is not None and rec.check_after is not None
    assert rec.undone and rec.check_after < rec.check_before
    assert "recovery lowered the validation metric" in (result.note or "")
    again, _ = prune_model(net, task, PruneConfig(ratio=0.5))  # the same pruned model, no recovery
    x = next(iter(task.eval_data))[0]["input"]
    assert torch.allclose(pruned(x), again(x), atol=1e-5)


def test_reestimation_skips_single_item_batches_and_models_without_batchnorm() -> None:
    data = Batches({"input": torch.randn(5, 3)}, torch.zeros(5), batch_size=1)
    net = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    net[1].running_mean.fill_(3.0)
    assert reestimate(net, data) == 0 and float(net[1].running_mean[0]) == 3.0  # no batch ran: stats kept
    assert reestimate(net, data.with_batch_size(5)) == 1 and float(net[1].running_mean[0]) != 3.0
    assert reestimate(nn.Linear(3, 2), data) == 0


def test_the_recovery_rate_fits_the_model_family() -> None:
    from slimkit.techniques.prune._recover import recovery_lr

    encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, batch_first=True), 1, enable_nested_tensor=False)
    assert recovery_lr(encoder, "finetune") == 2e-5 and recovery_lr(encoder, "distill") == 2e-4
    assert recovery_lr(_net(), "finetune") == 1e-3 and recovery_lr(_net(), "finetune", 0.05) == 0.05
    net = _net()
    _, result = prune_model(net, _task(net), PruneConfig(ratio=0.5, recover_epochs=1))
    assert result.recovery is not None and result.recovery.lr == 1e-3  # recorded in the report


def test_a_distilled_student_trains_at_its_family_rate_and_the_rate_is_recorded() -> None:
    from slimkit.core.data import Batches
    from slimkit.techniques.distill import DistillConfig, distill_model
    from slimkit.train.rates import learning_rate

    encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, batch_first=True), 1, enable_nested_tensor=False)
    assert learning_rate(encoder, "student") == 2e-4 and learning_rate(_net(), "student") == 3e-3
    torch.manual_seed(0)
    x, y = torch.randn(32, 3, 6, 6), torch.randint(0, 4, (32,))
    teacher, student = _net(), _net()
    r = distill_model(teacher, student, Batches({"input": x}, y, 8), DistillConfig(epochs=1),
                      nn.functional.cross_entropy)
    assert r.config.lr == 3e-3
    r = distill_model(teacher, _net(), Batches({"input": x}, y, 8), DistillConfig(epochs=1, lr=0.01),
                      nn.functional.cross_entropy)
    assert r.config.lr == 0.01
