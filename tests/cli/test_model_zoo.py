"""--model and --data from the command line, offline, and `slimkit predict` on what the run deployed."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from slimkit.cli.main import main
from slimkit.errors import SlimkitError
from slimkit.tasks.sources import load_data
from slimkit.tasks.zoo import UserModel, load_model

WORDS = ["the", "a", "good", "bad", "movie", "film", "was", "is", "great", "terrible", "fine", "okay", "plot", "acting"]


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT classifier with the bundled MiniLM tokenizer, saved as a user's folder would be."""
    transformers = pytest.importorskip("transformers")
    from slimkit.tasks._minilm_model import model_folder

    tok = transformers.AutoTokenizer.from_pretrained(str(model_folder()))
    cfg = transformers.BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1,
                                  num_attention_heads=2, intermediate_size=64, num_labels=3,
                                  id2label={0: "neg", 1: "neu", 2: "pos"}, label2id={"neg": 0, "neu": 1, "pos": 2})
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("hf") / "classifier"
    transformers.BertForSequenceClassification(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def reviews(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("data") / "reviews.csv"
    lines = ["text,label"] + [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 12))) + ","
                              + rng.choice(["neg", "neu", "pos"]) for _ in range(48)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_an_hf_folder_and_a_csv_go_through_quantize_and_predict(hf_folder: Path, reviews: Path,
                                                                 tmp_path: Path, capsys) -> None:
    out = tmp_path / "q"
    assert main(["quantize", "--model", f"hf:{hf_folder}", "--data", f"csv:{reviews}", "--target", "onnxruntime",
                 "--scheme", "int8-dynamic", "--quick", "--threads", "1", "--out", str(out)]) == 0
    manifest = json.loads((out / "artifacts" / "onnxruntime-int8-dynamic" / "manifest.json").read_text())
    assert manifest["inputs"]["input_ids"]["shape"] == [None, None]  # any batch, any sentence length
    assert manifest["input_order"][:2] == ["input_ids", "attention_mask"]  # forward()'s order
    pre = manifest["preprocessing"]
    assert pre["kind"] == "text" and pre["labels"] == ["neg", "neu", "pos"] and "tokenizer.json" in pre["files"]
    assert manifest["metric"]["name"] == "accuracy" and manifest["outputs"]["output"]["shape"] == [None, 3]
    texts = tmp_path / "t.txt"
    texts.write_text("a good movie\nthe plot was terrible and the acting was bad from start to end\n")
    capsys.readouterr()
    assert main(["predict", "--model", str(out), "--entry", "onnxruntime-int8-dynamic", "--input", str(texts)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["input"] for r in rows] == texts.read_text().splitlines()
    assert all(r["label"] in ("neg", "neu", "pos") and len(r["output"]) == 3 for r in rows)
    # recipe.yaml records the --model/--data options: `slimkit run` repeats the run from it alone
    assert "--model and --data options recorded" in (out / "recipe.yaml").read_text()
    assert main(["run", str(out), "--quick", "--threads", "1", "--out", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "report.json").read_text())
    first = json.loads((out / "report.json").read_text())
    assert [c["metric"] for c in again["candidates"]] == [c["metric"] for c in first["candidates"]]


def test_an_image_folder_goes_through_a_torchvision_model(tmp_path: Path, capsys) -> None:
    from PIL import Image

    for c in ("cat", "dog"):
        (tmp_path / "img" / c).mkdir(parents=True)
        for i in range(6):
            Image.fromarray((torch.rand(20, 24, 3) * 255).byte().numpy()).save(tmp_path / "img" / c / f"{i}.png")
    out = tmp_path / "b"
    assert main(["bench", "--model", "torchvision:squeezenet1_0", "--image-size", "32", "--data",
                 f"imagefolder:{tmp_path / 'img'}", "--targets", "onnxruntime", "--quick", "--threads", "1",
                 "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["predict", "--model", str(out), "--entry", "onnxruntime", "--input", str(tmp_path / "img")]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 12 and all(len(r["output"]) == 1000 for r in rows)


def test_user_weights_with_their_own_head_are_loaded(tmp_path: Path) -> None:
    tv = pytest.importorskip("torchvision")
    mine = tv.models.get_model("squeezenet1_0", num_classes=7)
    torch.save(mine.state_dict(), tmp_path / "w.pt")
    loaded = load_model("torchvision:squeezenet1_0", weights=tmp_path / "w.pt", image_size=32).model
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(loaded(x), mine.eval()(x)) and loaded(x).shape == (1, 7)


@pytest.mark.parametrize("args, message", [
    (["--model", "torchvision:nosuchnet", "--data", "csv:x.csv"], "torchvision has no model"),
    (["--model", "hf:/nonexistent", "--data", "csv:x.csv"], "holds no config.json"),
    (["--model", "keras:thing", "--data", "csv:x.csv"], "cannot read model"),
    (["--model", "torchvision:resnet18"], "--model needs --data"),
    (["--task", "digits-cnn", "--model", "torchvision:resnet18"], "either --task or --model"),
    (["--task", "digits-cnn", "--data", "csv:x.csv"], "--data goes with --model"),
])
def test_bad_model_or_data_specs_are_clear_errors(args: list[str], message: str, tmp_path: Path, capsys) -> None:
    assert main(["bench", *args, "--targets", "torch", "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_data_specs_refuse_what_they_cannot_read(tmp_path: Path) -> None:
    user = UserModel(torch.nn.Linear(2, 2), "m")
    (tmp_path / "d.csv").write_text("a,b\nx,y\n")
    (tmp_path / "d.jsonl").write_text('{"a": 1}\n[1, 2]\n')
    for spec, message in ((f"csv:{tmp_path / 'd.csv'}", "not numbers"),
                          (f"jsonl:{tmp_path / 'd.jsonl'}", "not an object"),
                          (f"parquet:{tmp_path / 'd.csv'}", "cannot read data"),
                          (f"imagefolder:{tmp_path / 'none'}", "does not exist")):
        with pytest.raises(SlimkitError, match=message):
            load_data(spec, user)


MODELS = '''
import torch
class Lin(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(2, 3)
    def forward(self, x):
        return self.fc(x)
def lin():
    torch.manual_seed(0)
    return Lin()
'''


def test_hostile_files_give_clear_errors_and_nothing_is_lost(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.py").write_text(MODELS)
    (tmp_path / "d.csv").write_text("a,b,label\n" + "".join(f"{i},{i % 3},{'xyz'[i % 3]}\n" for i in range(30)))
    # A relative --out (ONNX Runtime's pre-processing runs in a scratch folder) and recorded sources
    assert main(["quantize", "--model", "m.py:lin", "--data", "csv:d.csv", "--target", "onnxruntime",
                 "--quick", "--threads", "1", "--out", "q"]) == 0
    assert str(tmp_path / "m.py") in (tmp_path / "q" / "recipe.yaml").read_text()  # re-runs from any folder
    np = pytest.importorskip("numpy")
    np.save(tmp_path / "x.npy", np.zeros((4, 2), dtype=np.float32))
    artifact = tmp_path / "q" / "artifacts" / "onnxruntime-fp32" / "model.onnx"
    before = artifact.read_bytes()
    for args, message in (
        (["--input", "x.npy", "--output", str(artifact)], "the model's folder"),
        (["--input", "x.npy", "--output", "x.npy"], "the input"),
        (["--input", "d.csv"], "records no text or image preprocessing"),
    ):
        assert main(["predict", "--model", "q", "--entry", "onnxruntime-fp32", *args]) == 2
        assert message in capsys.readouterr().err
    assert artifact.read_bytes() == before and np.load(tmp_path / "x.npy").shape == (4, 2)
    # bad data: blank labels, latin-1 text, a pickle posing as weights (never unpickled)
    (tmp_path / "blank.csv").write_text("a,b,label\n1,2,x\n3,4,\n")
    (tmp_path / "latin.csv").write_bytes("a,b,label\n1,2,caf\xe9\n".encode("latin-1"))
    import pickle

    class Boom:
        def __reduce__(self):
            return (open, (str(tmp_path / "PWNED"), "w"))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"fc.weight": Boom()}))
    for args, message in (
        (["--data", "csv:blank.csv"], "has no label"),
        (["--data", "csv:latin.csv"], "not UTF-8"),
        (["--data", "csv:d.csv", "--weights", "evil.pt"], "without unpickling"),
    ):
        assert main(["bench", "--model", "m.py:lin", *args, "--targets", "torch", "--out", "b"]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "b").exists()


def test_evaluation_folders_number_classes_as_the_training_folder(tmp_path: Path) -> None:
    from PIL import Image

    for folder, classes in (("train", ("cat", "dog")), ("dogs", ("dog",))):
        for c in classes:
            (tmp_path / folder / c).mkdir(parents=True)
            Image.new("RGB", (8, 8)).save(tmp_path / folder / c / "0.png")
    user = UserModel(torch.nn.Linear(2, 2), "m")
    train = load_data(f"imagefolder:{tmp_path / 'train'}", user, image_size=8)
    dogs = load_data(f"imagefolder:{tmp_path / 'dogs'}", user, image_size=8)
    assert train.classes == ["cat", "dog"] and dogs[0][1] == 1  # "dog" stays class 1


def test_a_timm_model_with_its_own_head_and_its_transform() -> None:
    timm = pytest.importorskip("timm")
    import tempfile

    mine = timm.create_model("resnet18", pretrained=False, num_classes=7)
    path = Path(tempfile.mkdtemp()) / "w.pt"
    torch.save(mine.state_dict(), path)
    user = load_model("timm:resnet18", weights=path)
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(user.model(x), mine.eval()(x)) and user.model(x).shape == (1, 7)
    assert user.preprocess["kind"] == "image" and user.preprocess["crop"] == 224


def test_a_saved_hf_dataset_goes_through_quantize(hf_folder: Path, tmp_path: Path) -> None:
    """hf-disk: a DatasetDict of raw text with a label column of another name, tokenized by the model's tokenizer."""
    datasets = pytest.importorskip("datasets")
    rng = random.Random(1)
    rows = {"sentence": [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 12))) for _ in range(40)],
            "stars": [rng.randrange(3) for _ in range(40)]}
    folder = tmp_path / "reviews-ds"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows)}).save_to_disk(str(folder))
    out = tmp_path / "q"
    assert main(["quantize", "--model", f"hf:{hf_folder}", "--data", f"hf-disk:{folder}", "--text-column", "sentence",
                 "--label-column", "stars", "--target", "onnxruntime", "--scheme", "int8-dynamic", "--quick",
                 "--threads", "1", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    # the renamed label column was read as labels: accuracy, not agreement with the model itself
    assert report["baseline"]["metric"]["name"] == "accuracy"
    assert 0 <= report["baseline"]["metric"]["value"] <= 100
    assert "hf-disk:" in (out / "recipe.yaml").read_text()
