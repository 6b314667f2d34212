"""Data named on the command line: ``imagefolder:DIR``, ``csv:FILE``, ``jsonl:FILE``, ``hf-disk:DIR``,
made into the model's inputs with its preprocessing (image transforms, its tokenizer)."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from slimkit._optional import require
from slimkit.errors import UsageError, first_line, shown
from slimkit.tasks._adapters import LABEL_KEYS, MAX_ITEMS, Signature, sample
from slimkit.tasks.zoo import UserModel, image_preprocess, image_transform

KINDS = ("imagefolder", "csv", "jsonl", "hf-disk")
_CHUNK = 32


@dataclass(frozen=True)
class Columns:
    """Which columns of a table hold the text and the label (``label`` absent: unlabelled)."""

    text: str = "text"
    label: str = "label"


def load_data(spec: str, user: UserModel, *, columns: Columns = Columns(), max_items: int | None = MAX_ITEMS,
              image_size: int = 224) -> Any:
    """The data ``spec`` names, as something :func:`slimkit.tasks.user.task_from_model` reads.

    A table with more than ``max_items`` rows gives a seeded random sample of them (files are
    often sorted by label). An image folder for a model without a transform of its own gets the
    standard one at ``image_size``, recorded in ``user.preprocess``.

    Example:
        >>> import tempfile, pathlib
        >>> from slimkit.tasks.zoo import UserModel
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "d.csv"; _ = f.write_text("a,b,label\\n1,2,0\\n3,4,1\\n")
        >>> batches = load_data(f"csv:{f}", UserModel(torch.nn.Linear(2, 2), "m"))
        >>> batches[0]["input"].tolist(), batches[0]["labels"].tolist()
        ([[1.0, 2.0], [3.0, 4.0]], [0, 1])
    """
    kind, sep, where = spec.partition(":")
    if not sep or kind not in KINDS:
        raise UsageError(f"cannot read data '{spec}'",
                         hint="use imagefolder:DIR, csv:FILE, jsonl:FILE or hf-disk:DIR")
    path = Path(where)
    if not path.exists():
        raise UsageError(f"{kind} data {path} does not exist")
    if kind == "imagefolder":
        return _imagefolder(path, user, image_size)
    if kind == "hf-disk":
        return _hf_disk(path, user, columns)
    rows = read_rows(path, kind, max_items)
    return _table(rows, user, columns, path)


def _imagefolder(path: Path, user: UserModel, size: int) -> Any:
    tv = require("torchvision", "imagefolder data")
    if user.transform is None:  # a model from a file: the standard transform, recorded for predict
        user.preprocess = image_preprocess(size)
        user.transform = image_transform(user.preprocess)
    transform = user.transform
    if not path.is_dir():
        raise UsageError(f"imagefolder {path} is not a folder", hint="one subfolder per class, images inside")
    known = user.labels

    class Folder(tv.datasets.ImageFolder):  # type: ignore[name-defined]
        """An image folder numbering its classes as the first one read did (evaluation data after
        training data), not by its own subfolders: one class missing would shift every index."""

        def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
            classes, _ = super().find_classes(directory)
            if known is None:
                return classes, {c: i for i, c in enumerate(classes)}
            unknown = sorted(set(classes) - set(known))
            if unknown:
                raise UsageError(f"{directory} has classes {', '.join(unknown[:5])} the model does not know "
                                 f"({', '.join(known[:10])})", hint="name the subfolders after the training classes")
            return list(known), {c: i for i, c in enumerate(known)}

    try:
        folder = Folder(str(path), transform=transform, allow_empty=known is not None)  # eval: a class may be absent
    except (FileNotFoundError, RuntimeError) as exc:
        raise UsageError(f"{path} is not an image folder: {first_line(exc, 200)}",
                         hint="one subfolder per class, images inside (torchvision ImageFolder layout)") from None
    user.labels = user.labels or list(folder.classes)
    return folder


def read_rows(path: Path, kind: str, max_items: int | None) -> list[dict[str, Any]]:
    """The rows of a CSV (with a header) or JSON Lines file (one object per line), UTF-8 with or without BOM."""
    if not path.is_file():
        raise UsageError(f"{kind} data {path} is not a file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            if kind == "csv":
                reader: Any = csv.DictReader(f)
            else:
                reader = (_json_line(line, path, i) for i, line in enumerate(f, 1) if line.strip())
            rows = list(reader)
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path} is not UTF-8 text (byte {exc.start})", hint="save it as UTF-8") from None
    except csv.Error as exc:
        raise UsageError(f"{path} is not a CSV file slimkit can read: {exc}",
                         hint="one header row, then one row per item; fields under 128 KiB") from None
    if not rows:
        raise UsageError(f"{path} holds no rows")
    if max_items is not None and len(rows) > max_items:
        rows = [rows[i] for i in sample(len(rows), max_items)]
    return rows


def _json_line(line: str, path: Path, number: int) -> dict[str, Any]:
    try:
        row = json.loads(line)
    except (ValueError, RecursionError):
        raise UsageError(f"line {number} of {path} is not JSON slimkit reads: {shown(line.strip())}") from None
    if not isinstance(row, dict):
        raise UsageError(f"line {number} of {path} is a JSON {type(row).__name__}, not an object")
    return row


def _labels(values: Sequence[Any], user: UserModel, path: Path) -> torch.Tensor:
    """Class numbers from a label column: numbers as they are, names through the model's labels (or,
    where it has none, the names sorted, kept in ``user.labels`` so evaluation data numbers them alike)."""
    blank = next((i for i, v in enumerate(values, 1) if v is None or str(v).strip() == ""), None)
    if blank is not None:
        raise UsageError(f"row {blank} of {path} has no label", hint="give every row a label, or drop the label column")
    if all(_is_int(v) for v in values):
        return torch.tensor([int(float(v)) for v in values])
    names = user.labels or sorted({str(v) for v in values})
    user.labels = names
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted({str(v) for v in values} - set(index))
    if unknown:
        raise UsageError(f"labels {', '.join(map(shown, unknown[:5]))} of {path} are not among the model's "
                         f"({', '.join(names[:10])})", hint="use the class names (or numbers) the model was trained on")
    return torch.tensor([index[str(v)] for v in values])


def _is_int(value: Any) -> bool:
    """A whole number a class index can be (not 1e400, not 10**30)."""
    try:
        number = float(value)
        return number == int(number) and 0 <= number < 2**31
    except (TypeError, ValueError, OverflowError):
        return False


def _table(rows: list[dict[str, Any]], user: UserModel, columns: Columns, path: Path) -> list[dict[str, Any]]:
    """Batches of a table: tokenized text for a model with a tokenizer, else numeric feature columns."""
    keys = list(rows[0])
    has_label = columns.label in keys
    labels = _labels([r.get(columns.label) for r in rows], user, path) if has_label else None
    if user.tokenizer is not None:
        if columns.text not in keys:
            raise UsageError(f"{path} has no text column '{columns.text}' (columns: {', '.join(keys)})",
                             hint="name it with --text-column")
        texts = [str(r.get(columns.text) or "") for r in rows]
        return [_tokenized(texts[i:i + _CHUNK], user, None if labels is None else labels[i:i + _CHUNK])
                for i in range(0, len(rows), _CHUNK)]
    features = [k for k in keys if k != columns.label]
    try:
        x = torch.tensor([[float(r[k]) for k in features] for r in rows], dtype=torch.float32)
    except (TypeError, ValueError, KeyError, OverflowError):
        raise UsageError(f"{path} has feature values that are not numbers (or rows missing columns), and the "
                         "model has no tokenizer", hint="give numeric feature columns in every row, or a model "
                         "with a tokenizer (an hf: folder that holds one) for text") from None
    names = Signature.of(user.model).names
    if not names:
        raise UsageError("the model's forward() takes no named tensor argument to feed the feature columns to",
                         hint="give the model a forward(x) taking the features")
    name = names[0]  # the feature vector is the model's first input
    return [{name: x[i:i + _CHUNK], **({"labels": labels[i:i + _CHUNK]} if labels is not None else {})}
            for i in range(0, len(rows), _CHUNK)]


def tokenize(texts: list[str], user: UserModel) -> dict[str, torch.Tensor]:
    """The model's inputs for ``texts``, as its recorded preprocessing makes them."""
    return encode_texts(user.tokenizer, texts, user.preprocess.get("max_length", 128))


def encode_texts(tokenizer: Any, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
    """Token tensors for ``texts``: padded to the longest, cut at ``max_length`` (what every run records)."""
    encoded = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    return {k: v for k, v in encoded.items() if isinstance(v, torch.Tensor)}


def _tokenized(texts: list[str], user: UserModel, labels: torch.Tensor | None) -> dict[str, Any]:
    batch: dict[str, Any] = dict(tokenize(texts, user))
    if labels is not None:
        batch["labels"] = labels
    return batch


def _hf_disk(path: Path, user: UserModel, columns: Columns) -> Any:
    datasets = require("datasets", "hf-disk data (pip install datasets)")
    data = datasets.load_from_disk(str(path))
    if isinstance(data, datasets.DatasetDict):
        split = "train" if "train" in data else next(iter(data))
        data = data[split]
    if "input_ids" not in data.column_names and user.tokenizer is not None and columns.text in data.column_names:
        data = data.map(lambda b: user.tokenizer(b[columns.text], truncation=True,
                                                 max_length=user.preprocess.get("max_length", 128)), batched=True)
    if columns.label in data.column_names and columns.label not in LABEL_KEYS:
        data = data.rename_column(columns.label, "labels")  # --label-column names it
    return data
