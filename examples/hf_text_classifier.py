"""A Hugging Face text classifier in a local folder and a CSV data set in, an int8 model that serves raw
text out: the same as

    slimkit quantize --model hf:DIR --data csv:FILE --target openvino --out runs/q
    slimkit predict --model runs/q --input texts.txt

from Python. The classifier here is the bundled all-MiniLM-L6-v2 encoder with a head trained for a few
steps on docstrings of three standard-library modules (what each text documents: json, os or math),
so the example runs offline; point --model-dir / --csv at your own.

    python examples/hf_text_classifier.py --out runs/example-text
"""

from __future__ import annotations

import argparse
import csv
import inspect
import json
import math
import os
from pathlib import Path

import torch
import transformers

import slimkit
from slimkit.pipeline.predict import predict_file
from slimkit.tasks.sources import load_data
from slimkit.tasks.zoo import load_model

MODULES = {"json": json, "os": os, "math": math}


def write_csv(path: Path) -> Path:
    """Docstrings of public functions in three modules, labelled by module."""
    rows = []
    for label, module in MODULES.items():
        for name, obj in sorted(vars(module).items()):
            doc = inspect.getdoc(obj) if callable(obj) and not name.startswith("_") else None
            if doc:
                rows.append({"text": " ".join(doc.split())[:300], "label": label})
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, ["text", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def make_classifier(folder: Path, data: Path, steps: int) -> Path:
    """A user's fine-tuned classifier folder: the bundled MiniLM with a trained 3-class head."""
    from slimkit.tasks._minilm_model import model_folder

    labels = list(MODULES)
    tok = transformers.AutoTokenizer.from_pretrained(str(model_folder()))
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        str(model_folder()), num_labels=3, id2label=dict(enumerate(labels)),
        label2id={k: i for i, k in enumerate(labels)})
    with open(data, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.classifier.parameters(), lr=1e-2)
    for step in range(steps):  # the head only: a few seconds on two cores
        batch = [rows[(step * 16 + i * 7) % len(rows)] for i in range(16)]
        enc = tok([r["text"] for r in batch], padding=True, truncation=True, max_length=64, return_tensors="pt")
        out = model(**enc, labels=torch.tensor([labels.index(r["label"]) for r in batch]))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", help="your classifier folder (save_pretrained); default: one made here")
    p.add_argument("--csv", help="your data: text and label columns; default: stdlib docstrings")
    p.add_argument("--out", default="runs/example-text")
    p.add_argument("--steps", type=int, default=40, help="head training steps of the classifier made here")
    p.add_argument("--quick", action="store_true", help="short timing runs (for tests)")
    args = p.parse_args()

    data = Path(args.csv) if args.csv else write_csv(Path(args.out) / "docstrings.csv")
    folder = Path(args.model_dir) if args.model_dir else make_classifier(Path(args.out) / "classifier", data,
                                                                          args.steps)
    user = load_model(f"hf:{folder}", max_length=64)  # the right AutoModel class and head, the tokenizer
    result = slimkit.quantize(user, load_data(f"csv:{data}", user), target="openvino", out=f"{args.out}/quantize",
                              quick=args.quick)
    for entry in result.entries:
        print(f"{entry.id:24s} accuracy {entry.measurement.metric:6.2f}  {entry.measurement.latency.median:.3f} ms")

    texts = Path(args.out) / "texts.txt"
    texts.write_text("Return the square root of x.\nDeserialize a JSON document to a Python object.\n"
                     "Remove a directory and all its files.\n")
    predictor = slimkit.load(f"{args.out}/quantize", entry="openvino-int8-static")
    for row in predict_file(predictor, texts):  # raw text, through the tokenizer saved beside the model
        print(f"{row['label']:5s} <- {row['input']}")


if __name__ == "__main__":
    main()
