"""A user's own data as named tensors: DataLoaders, datasets, iterables of tensors, ``(inputs, target)``
tuples, HF-style dicts and tokenized ``datasets.Dataset`` objects all become one shape.

The data is read once, up to a cap, into whole tensors (what :class:`slimkit.Batches` cuts batches
from): calibration, evaluation, sensitivity and recovery all read it many times, and a loader that
decodes images on every pass would dominate their time.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from slimkit.errors import SlimkitError, TaskError, first_line, shown

MAX_ITEMS = 2048  # items read from a user's data set by default (each data set: training and evaluation)
LABEL_KEYS = ("labels", "label", "targets", "target", "y")
_CHUNK = 32  # rows per batch when the data comes whole (a dataset, one tensor)


@dataclass(frozen=True)
class Signature:
    """What ``model.forward`` takes: its argument names, how many are required, and ``**kwargs``."""

    names: tuple[str, ...]
    required: int
    any_keyword: bool

    @classmethod
    def of(cls, model: nn.Module) -> Signature:
        """Example:
        >>> Signature.of(torch.nn.Linear(2, 2))
        Signature(names=('input',), required=1, any_keyword=False)
        """
        params = list(inspect.signature(model.forward).parameters.values())
        named = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        required = sum(p.default is p.empty and p.kind != p.KEYWORD_ONLY for p in named)
        return cls(tuple(p.name for p in named), required, any(p.kind == p.VAR_KEYWORD for p in params))


@dataclass
class Tensors:
    """A data set read whole: named inputs, and the targets when the data carried labels."""

    inputs: dict[str, torch.Tensor]
    targets: torch.Tensor | None
    batch_size: int
    truncated: bool = False  # the data held more than the cap: a sample (sized data) or the first items

    @property
    def num_items(self) -> int:
        return int(next(iter(self.inputs.values())).shape[0])

    def take(self, index: torch.Tensor) -> Tensors:
        return Tensors({k: v[index] for k, v in self.inputs.items()},
                       None if self.targets is None else self.targets[index], self.batch_size, self.truncated)


def as_tensor(value: Any, what: str) -> torch.Tensor:
    """A tensor from a tensor, a NumPy array, a number or a (nested) list of numbers."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, (int, float, bool, np.number)):
        return torch.tensor(value)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, torch.Tensor) for v in value):
        if len({v.shape for v in value}) > 1 and all(v.dim() >= 1 for v in value):
            # Rows of a tokenized dataset, each as long as its text: zero-padded to the longest.
            return torch.nn.utils.rnn.pad_sequence([v.detach() for v in value], batch_first=True)
        return torch.stack([v.detach() for v in value])
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        raise TaskError(f"{what} is a {type(value).__name__} ({shown(value)}), not a tensor",
                        hint="give tensors, NumPy arrays or lists of numbers (tokenize text first)") from None


def _batches(data: Any, max_items: int) -> Iterator[Any]:
    """The data's batches, whatever container it comes in."""
    from torch.utils.data import DataLoader, Dataset, IterableDataset

    if isinstance(data, torch.Tensor | np.ndarray):
        data = _rows(data, max_items)
        yield from (data[i:i + _CHUNK] for i in range(0, len(data), _CHUNK))
    elif isinstance(data, tuple) and data and all(isinstance(d, torch.Tensor | np.ndarray) for d in data):
        # (X, y) or (X1, X2) whole: one set cut into batches (a tuple of batches would be a list).
        _same_length({str(i): d for i, d in enumerate(data)})
        parts = [_rows(d, max_items) for d in data]
        yield from (tuple(d[i:i + _CHUNK] for d in parts) for i in range(0, len(parts[0]), _CHUNK))
    elif isinstance(data, Mapping):
        _same_length(data)
        columns = {k: _rows(v, max_items) for k, v in data.items()}
        n = len(next(iter(columns.values()))) if columns else 0
        yield from ({k: v[i:i + _CHUNK] for k, v in columns.items()} for i in range(0, n, _CHUNK))
    elif hasattr(data, "column_names") and hasattr(data, "with_format") and hasattr(data, "__len__"):
        # A Hugging Face datasets.Dataset: sliced rows come as a dict of columns.
        rows = data.with_format("torch")
        if len(rows) > max_items and hasattr(rows, "select"):
            rows = rows.select(sample(len(rows), max_items))
        yield from (rows[i:i + _CHUNK] for i in range(0, min(len(rows), max_items), _CHUNK))
    elif isinstance(data, Dataset) and not isinstance(data, IterableDataset) and hasattr(data, "__len__"):
        yield from DataLoader(_sampled(data, max_items), batch_size=_CHUNK)  # map-style: items collated
    elif isinstance(data, DataLoader) and _sized(data.dataset) and len(cast(Any, data.dataset)) > max_items:
        # More items than are read: a random sample of the loader's data set (a folder of images is
        # sorted by class, and its first items would be one or two classes), batched as it batches.
        yield from DataLoader(_sampled(data.dataset, max_items), batch_size=data.batch_size or _CHUNK,
                              collate_fn=data.collate_fn)
    elif isinstance(data, Iterable) and not isinstance(data, (str, bytes)):
        yield from data
    else:
        raise TaskError(f"data of type {type(data).__name__} cannot be read",
                        hint="give a DataLoader, a Dataset, or any iterable of tensors, (inputs, target) "
                             "tuples or dicts")


def sample(size: int, count: int, seed: int = 0) -> list[int]:
    """``count`` of ``range(size)`` drawn at random (seeded), in order."""
    return sorted(torch.randperm(size, generator=torch.Generator().manual_seed(seed))[:count].tolist())


def _total(data: Any) -> int:
    """How many items a data set holds, where it says (0 when it does not)."""
    from torch.utils.data import DataLoader

    inner: Any = data.dataset if isinstance(data, DataLoader) else data
    if isinstance(inner, tuple | Mapping):
        inner = next(iter(inner.values() if isinstance(inner, Mapping) else inner), ())
    try:
        return len(inner) if _sized(inner) or isinstance(inner, torch.Tensor | np.ndarray) else 0
    except TypeError:
        return 0


def _same_length(columns: Mapping[Any, Any]) -> None:
    lengths = {str(k): len(v) for k, v in columns.items() if hasattr(v, "__len__")}
    if len(set(lengths.values())) > 1:
        raise TaskError(f"the data's parts differ in length ({lengths})",
                        hint="give inputs and labels with one row per item each")


def _rows(array: Any, max_items: int) -> Any:
    """An array's rows, a seeded random sample of ``max_items`` of them when it has more."""
    return array[sample(len(array), max_items)] if len(array) > max_items else array


def _sized(data: Any) -> bool:
    from torch.utils.data import IterableDataset

    return hasattr(data, "__len__") and hasattr(data, "__getitem__") and not isinstance(data, IterableDataset)


def _sampled(data: Any, max_items: int) -> Any:
    from torch.utils.data import Subset

    return Subset(data, sample(len(data), max_items)) if len(data) > max_items else data


def _split(item: Any, sig: Signature) -> tuple[dict[str, Any], Any]:
    """One batch as (inputs by forward-argument name, target or None)."""
    if isinstance(item, Mapping):
        keys = set(item)
        # Labels are the target even where forward() takes them (an HF model given labels returns
        # its loss first, and the loss is not what slimkit measures).
        label = next((k for k in LABEL_KEYS if k in keys), None)
        inputs = {k: v for k, v in item.items() if k != label and (k in sig.names or sig.any_keyword)
                  and not isinstance(v, str) and not (isinstance(v, list) and v and isinstance(v[0], str))}
        if not inputs:
            raise TaskError(f"no key of the data's dicts ({', '.join(map(str, sorted(keys)))}) is an argument of "
                            f"the model's forward ({', '.join(sig.names)})",
                            hint="name the dict keys after forward()'s arguments (labels under 'labels')")
        return inputs, item[label] if label else None
    if isinstance(item, (tuple, list)):
        first = item[0] if item else None
        if len(item) == 2 and (sig.required <= 1 or isinstance(first, (tuple, list, Mapping))):
            if isinstance(first, Mapping):
                return _split(first, sig)[0], item[1]
            return _positional(tuple(first) if isinstance(first, (tuple, list)) else (first,), sig), item[1]
        return _positional(tuple(item), sig), None
    return _positional((item,), sig), None


def _positional(values: tuple[Any, ...], sig: Signature) -> dict[str, Any]:
    if len(values) > len(sig.names):
        raise TaskError(f"a batch holds {len(values)} tensors but the model's forward takes {len(sig.names)} "
                        f"({', '.join(sig.names)})",
                        hint="yield (inputs, target) pairs, or dicts named after forward()'s arguments")
    return dict(zip(sig.names, values, strict=False))


def _guarded(items: Iterator[Any], what: str) -> Iterator[Any]:
    """``items``, with a failure of the user's data (a corrupt image, a loader that raises) said as one."""
    while True:
        try:
            item = next(items)
        except StopIteration:
            return
        except SlimkitError:
            raise
        except Exception as exc:  # the user's Dataset/DataLoader code: anything can come out of it
            raise TaskError(f"reading {what} failed: {type(exc).__name__}: {first_line(exc)}",
                            hint="every item must load: look for a corrupt file or a bad row in the data") from exc
        yield item


def read_tensors(data: Any, model: nn.Module, *, max_items: int = MAX_ITEMS, what: str = "data") -> Tensors:
    """Read ``data`` (up to ``max_items`` items) into whole tensors named after ``model.forward``.

    Example:
        >>> x, y = torch.randn(10, 4), torch.arange(10)
        >>> t = read_tensors([(x[:5], y[:5]), (x[5:], y[5:])], torch.nn.Linear(4, 2))
        >>> list(t.inputs), t.targets.tolist() == list(range(10)), t.batch_size
        (['input'], True, 5)
    """
    sig = Signature.of(model)
    parts: dict[str, list[torch.Tensor]] = {}
    targets: list[torch.Tensor] = []
    count, batch_size = 0, 0
    truncated = _total(data) > max_items
    for item in _guarded(_batches(data, max_items), what):
        if count >= max_items:
            truncated = True
            break
        raw, target = _split(item, sig)
        inputs = {k: as_tensor(v, f"{what} input '{k}'") for k, v in raw.items()}
        t = None if target is None else as_tensor(target, f"{what} target")
        if t is not None and t.dim() == 0:
            # One item with a class number (a list of (image, label) pairs), not a batch: add the batch axis.
            inputs, t = {k: v.unsqueeze(0) for k, v in inputs.items()}, t.reshape(1)
        inputs = {k: v.unsqueeze(0) if v.dim() == 0 else v for k, v in inputs.items()}
        size = next(iter(inputs.values())).shape[0]
        batch_size = batch_size or size
        if set(inputs) != set(parts or inputs):
            raise TaskError(f"{what}'s batches name different inputs ({sorted(parts)} then {sorted(inputs)})")
        if (t is None) != (not targets) and count:
            raise TaskError(f"some of {what}'s batches carry labels and some do not",
                            hint="give every batch a target, or none")
        for k, v in inputs.items():
            parts.setdefault(k, []).append(v)
        if t is not None:
            targets.append(t)
        count += size
    if not parts:
        raise TaskError(f"{what} holds no items", hint="give at least a few batches of the model's inputs")
    # In forward()'s order: positional calls of the deployed model follow it.
    order = sorted(parts, key=lambda k: sig.names.index(k) if k in sig.names else len(sig.names))
    joined = {k: _concat(parts[k], f"{what} input '{k}'") for k in order}
    n = min(count, max_items)
    return Tensors({k: v[:n] for k, v in joined.items()},
                   _concat(targets, f"{what} target")[:n] if targets else None, max(1, batch_size),
                   truncated or count > max_items)


def _concat(parts: list[torch.Tensor], what: str) -> torch.Tensor:
    """Batches joined along the first axis; sequences of different lengths padded with zeros (a
    loader that pads each batch to its own longest sentence)."""
    if len({p.shape[1:] for p in parts}) > 1:
        dims = {p.dim() for p in parts}
        if len(dims) > 1 or len({p.shape[2:] for p in parts}) > 1:
            raise TaskError(f"{what} has batches of different shapes ({sorted({tuple(p.shape) for p in parts})[:3]})",
                            hint="resize every item to one shape (only a sequence axis may vary)")
        width = max(p.shape[1] for p in parts)
        parts = [torch.nn.functional.pad(p, (0, 0) * (p.dim() - 2) + (0, width - p.shape[1])) for p in parts]
    return torch.cat(parts)
