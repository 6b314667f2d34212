"""One call on a user's own model and data: data adapters, the metric chosen, and the artifacts loaded back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

import slimkit
from slimkit.core.data import Batches
from slimkit.errors import SlimkitError
from slimkit.tasks._adapters import read_tensors
from slimkit.tasks.user import task_from_model


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5)).eval()


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.emb(input_ids)
        if attention_mask is not None:
            h = h * attention_mask.unsqueeze(-1)
        return self.head(h.mean(1))


class Items(Dataset):  # a map-style data set of single (image, label) items, as torchvision's are
    def __init__(self, n: int) -> None:
        self.x, self.y = torch.randn(n, 3, 8, 8), torch.randint(0, 5, (n,))

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.x[i], int(self.y[i])


X, Y = torch.randn(60, 3, 8, 8), torch.randint(0, 5, (60,))


@pytest.mark.parametrize("data, labelled", [
    (DataLoader(TensorDataset(X, Y), batch_size=16), True),
    ([X[i:i + 20] for i in range(0, 60, 20)], False),
    ((X, Y), True),
    (X.numpy(), False),
    (Items(60), True),
    ([(X[i], int(Y[i])) for i in range(60)], True),
    ([{"input": X[i:i + 30], "labels": Y[i:i + 30]} for i in (0, 30)], True),
])
def test_every_kind_of_data_reads_as_named_tensors(data: object, labelled: bool) -> None:
    t = read_tensors(data, _cnn())
    assert list(t.inputs) == ["input"] and t.num_items == 60 and tuple(t.inputs["input"].shape[1:]) == (3, 8, 8)
    assert (t.targets is not None) == labelled


def test_dicts_name_inputs_after_forward_and_ragged_sequences_are_padded() -> None:
    batches = [{"input_ids": torch.randint(1, 50, (4, n)), "attention_mask": torch.ones(4, n, dtype=torch.long),
                "labels": torch.randint(0, 3, (4,)), "text": ["a"] * 4} for n in (5, 9)]
    t = read_tensors(batches, TwoInputs())
    assert sorted(t.inputs) == ["attention_mask", "input_ids"] and t.inputs["input_ids"].shape == (8, 9)
    assert int(t.inputs["attention_mask"][:4, 5:].sum()) == 0  # padding is masked out
    assert t.targets is not None and t.targets.shape == (8,)


class FakeHFDataset:
    """The part of datasets.Dataset slimkit reads: columns, a torch format, slices as dicts of columns."""

    column_names = ("input_ids", "attention_mask", "label", "text")

    def __init__(self, rows: list[dict[str, object]]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def with_format(self, kind: str) -> FakeHFDataset:
        assert kind == "torch"
        return self

    def __getitem__(self, s: slice) -> dict[str, object]:
        part = self.rows[s]
        return {k: [torch.tensor(r[k]) if k != "text" else r[k] for r in part] for k in self.column_names}


def test_a_tokenized_dataset_of_rows_of_any_length_reads() -> None:
    rows = [{"input_ids": list(range(1, 3 + i % 4)), "attention_mask": [1] * (2 + i % 4), "label": i % 3,
             "text": "x"} for i in range(40)]
    t = read_tensors(FakeHFDataset(rows), TwoInputs())
    assert t.num_items == 40 and t.inputs["input_ids"].shape == (40, 5) and t.targets is not None


def test_a_real_tokenized_datasets_dataset_reads() -> None:
    datasets = pytest.importorskip("datasets")
    rows = [{"input_ids": list(range(1, 3 + i % 4)), "attention_mask": [1] * (2 + i % 4), "label": i % 3,
             "text": "x"} for i in range(40)]
    data = datasets.Dataset.from_list(rows)
    t = read_tensors(data, TwoInputs())
    assert t.num_items == 40 and t.inputs["input_ids"].shape == (40, 5) and t.targets is not None
    assert t.targets.tolist() == [r["label"] for r in rows]


@pytest.mark.parametrize("data, message", [
    ([], "holds no items"),
    ([{"pixels": torch.zeros(2, 3)}], "no key of the data's dicts"),
    ([(X[:2], Y[:2]), X[2:4]], "some of data's batches carry labels"),
    ([X[:2], torch.zeros(2, 3, 4, 4)], "batches of different shapes"),
    ([("a", "b")], "not a tensor"),
    (42, "cannot be read"),
])
def test_data_that_cannot_be_read_is_a_clear_error(data: object, message: str) -> None:
    with pytest.raises(SlimkitError, match=message):
        read_tensors(data, _cnn())


def test_the_metric_fits_the_data() -> None:
    assert task_from_model(_cnn(), DataLoader(TensorDataset(X, Y), batch_size=16)).metric.name == "accuracy"
    assert task_from_model(_cnn(), X).metric.name == "agreement"
    embed = nn.Sequential(nn.Flatten(), nn.Linear(192, 16))  # (batch, dim) reads as logits unless told
    assert task_from_model(embed, X).metric.name == "agreement"
    task = task_from_model(embed, X, metric="cosine")
    assert task.metric.name == "cosine" and task.eval_data.num_items == 12 and task.train_data.num_items == 48
    assert task.metric.compute(task.build_model()(task.eval_data.inputs["input"]), task.eval_data.targets) == \
        pytest.approx(1.0)

    def top2(outputs: torch.Tensor, targets: torch.Tensor) -> float:
        return float((outputs.topk(2).indices == targets[:, None]).any(1).float().mean())

    assert task_from_model(_cnn(), (X, Y), metric=top2).metric.name == "top2"
    assert task_from_model(nn.Conv2d(3, 4, 1), X).metric.name == "cosine"  # feature maps
    with pytest.raises(SlimkitError, match="needs class labels"):
        task_from_model(_cnn(), X, metric="accuracy")
    # Without labels the budget is 1% of the metric: one point of agreement, not half the scale.
    assert task_from_model(_cnn(), X).default_drop(100.0) == pytest.approx(1.0)


def test_a_task_name_refuses_data_and_a_model_needs_it(tmp_path: Path) -> None:
    with pytest.raises(SlimkitError, match="go with your own model"):
        slimkit.benchmark("digits-cnn", X, out=tmp_path / "a")
    with pytest.raises(SlimkitError, match="needs data for your model"):
        slimkit.quantize(_cnn(), out=tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def _reproduce(result: slimkit.Result, entry_id: str, task: slimkit.Task) -> float:
    """The entry's metric computed again from its artifact, loaded back through slimkit.load."""
    predictor = slimkit.load(result.out, entry=entry_id, model=result.original)
    assert isinstance(task.eval_data, Batches)
    outs = [predictor(**inputs) for inputs, _ in task.eval_data]
    return round(task.metric.compute(torch.cat(outs), task.eval_data.targets), 6)  # as the report rounds


def test_quantized_artifacts_load_back_and_reproduce_the_report(tmp_path: Path) -> None:
    model, data = _cnn(), DataLoader(TensorDataset(X, Y), batch_size=10)
    task = task_from_model(model, data)
    for target in ("onnxruntime", "openvino"):
        result = slimkit.quantize(model, data, target=target, out=tmp_path / target, quick=True, threads=1)
        for entry in result.candidates:  # the float model at the precision chosen, and the int8 one
            assert _reproduce(result, entry.id, task) == entry.measurement.metric, (target, entry.id)
        predictor = result.load(f"{target}-int8-static")
        assert predictor.manifest["target"] == target
        assert isinstance(predictor(X[:7].numpy()), np.ndarray) and predictor(X[:7]).shape == (7, 5)


def test_a_pruned_torch_model_loads_into_the_original_and_reproduces_the_report(tmp_path: Path) -> None:
    model = _cnn()
    result = slimkit.prune(model, X, ratio=0.5, targets=["torch"], out=tmp_path / "p", quick=True, threads=1)
    task = task_from_model(model, X)
    entry = result.entry("pruned-torch")
    assert _reproduce(result, "pruned-torch", task) == entry.measurement.metric
    with pytest.raises(SlimkitError, match="needs the model"):
        slimkit.load(tmp_path / "p", entry="pruned-torch")


@pytest.mark.parametrize("scheme", ["int8-dynamic", "fp16"])
def test_a_torch_quantized_model_is_rebuilt_from_the_original_and_reproduces_the_report(scheme: str,
                                                                                        tmp_path: Path) -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(192, 64), nn.ReLU(), nn.Linear(64, 5)).eval()
    result = slimkit.quantize(model, (X, Y), target="torch", scheme=scheme, out=tmp_path / scheme, quick=True,
                              threads=1)
    task = task_from_model(model, (X, Y))
    entry = result.entry(f"torch-{scheme}")
    assert _reproduce(result, entry.id, task) == entry.measurement.metric
    with pytest.raises(SlimkitError, match="does not give the weights"):
        slimkit.load(tmp_path / scheme, entry=entry.id, model=nn.Sequential(nn.Flatten(), nn.Linear(192, 64),
                                                                            nn.ReLU(), nn.Linear(64, 5)))


def test_batches_of_one_still_give_batchnorm_statistics_and_recovery(tmp_path: Path) -> None:
    model = _cnn()
    loader = DataLoader(TensorDataset(X, Y), batch_size=1)
    result = slimkit.prune(model, loader, ratio=0.3, recover_epochs=1, targets=["torch"], out=tmp_path / "p",
                           quick=True, threads=1, metric="cosine")
    assert result.entry("pruned-torch").measurement.metric > 0.5


def test_sorted_data_is_sampled_across_it_and_label_forms_are_read() -> None:
    x, y = torch.randn(300, 3, 8, 8), torch.arange(10).repeat_interleave(30)  # sorted by class, as folders are
    task = task_from_model(_cnn(), TensorDataset(x, y % 5), max_items=100)
    assert len(set(task.calibration_data.targets.tolist())) == 5 and "at most 100" in task.description
    float_labels = task_from_model(_cnn(), (X, Y.float()[:, None]))
    assert float_labels.metric.name == "accuracy" and float_labels.eval_data.targets.dtype == torch.long
    regression = task_from_model(_cnn(), (X, torch.rand(60)))
    assert regression.metric.name == "agreement" and "labels not used" in regression.description


class Tabular(nn.Module):  # token ids and category ids: integer inputs of different lengths
    def __init__(self) -> None:
        super().__init__()
        self.emb, self.cat = nn.Embedding(50, 8), nn.Embedding(20, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, input_ids: torch.Tensor, categories: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.head(self.emb(input_ids).mean(1) + self.cat(categories).mean(1))
        return {"loss": logits.sum() * 0, "logits": logits}  # a loss first, as HF models return one


def test_integer_inputs_of_other_lengths_and_outputs_with_a_loss_first(tmp_path: Path) -> None:
    data = [{"input_ids": torch.randint(0, 50, (16, 12)), "categories": torch.randint(0, 20, (16, 5))}
            for _ in range(4)]
    result = slimkit.quantize(Tabular().eval(), data, target="onnxruntime", scheme="int8-dynamic",
                              out=tmp_path / "q", quick=True, threads=1)
    predictor = result.load("onnxruntime-int8-dynamic")
    assert predictor.deployed.input_shapes["categories"] == [None, 5]
    assert predictor(torch.randint(0, 50, (3, 30)), torch.randint(0, 20, (3, 5))).shape == (3, 3)


def test_an_input_the_export_dropped_is_accepted(tmp_path: Path) -> None:
    class IgnoresMask(TwoInputs):
        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
            return self.head(self.emb(input_ids).mean(1))

    ids = torch.randint(1, 50, (40, 9))
    mask = torch.ones(10, 9, dtype=torch.long)
    data = [{"input_ids": ids[i:i + 10], "attention_mask": mask} for i in (0, 10, 20, 30)]
    result = slimkit.benchmark(IgnoresMask().eval(), data, targets=["onnxruntime"], out=tmp_path / "b", quick=True,
                               threads=1)
    predictor = result.load("onnxruntime")
    assert predictor(ids[:2], torch.ones(2, 9, dtype=torch.long)).shape == (2, 3)


def test_openvino_never_keeps_a_precision_that_loses_the_output(tmp_path: Path) -> None:
    """f16 turns outputs of ~1e-9 into zeros: faster, but not the model any more."""
    from slimkit.targets import get_target

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 8)).eval()
    with torch.no_grad():
        model[0].weight.mul_(1e-9)
        model[0].bias.zero_()
    x = {"input": torch.randn(4, 16)}
    deployed = get_target("openvino").deploy(model, x, tmp_path, threads=1)
    out, ref = deployed.run(x).double().flatten(), model(**x).detach().double().flatten()
    cos = float(out @ ref) / float(out.norm() * ref.norm() + 1e-300)  # torch's cosine clamps norms at 1e-8
    assert cos > 0.99, deployed.details


def test_a_model_whose_outputs_are_all_zero_or_constant_is_said_in_the_report(tmp_path: Path) -> None:
    """A metric alone hides a dead model (an int8 model of tiny activations outputs zeros): the entry says it."""
    from slimkit.measure.measure import output_warning

    zero = nn.Sequential(nn.Linear(16, 4)).eval()
    with torch.no_grad():
        zero[0].weight.zero_()
        zero[0].bias.zero_()
    data = [torch.randn(10, 16) for _ in range(4)]
    result = slimkit.benchmark(zero, data, targets=["onnxruntime"], out=tmp_path / "b", quick=True, threads=1)
    notes = [n for e in result.entries for n in e.notes]
    assert any("exactly zero" in n for n in notes), notes
    assert "exactly zero" in (tmp_path / "b" / "report.md").read_text()
    assert "same output" in str(output_warning(torch.ones(5, 3)))
    assert "NaN" in str(output_warning(torch.tensor([[1.0, float("nan")]])))
    assert output_warning(torch.randn(1, 3)) is None  # one item: nothing to compare
