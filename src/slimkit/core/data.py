"""Batches of named inputs and targets, the one data shape every part of slimkit reads.

A batch is ``(inputs, targets)`` where ``inputs`` maps forward-argument names to tensors
(so Hugging Face models called with keywords and plain CNNs look the same to exporters and
runtimes) and ``targets`` is whatever the task's metric and loss compare outputs against.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch

Inputs = dict[str, torch.Tensor]
Batch = tuple[Inputs, torch.Tensor]


@dataclass
class Batches:
    """A re-iterable set of batches cut from whole tensors, optionally shuffled per epoch.

    Example:
        >>> import torch
        >>> data = Batches({"x": torch.zeros(10, 3)}, torch.arange(10), batch_size=4)
        >>> [t.tolist() for _, t in data]
        [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
        >>> len(data)
        3
    """

    inputs: Mapping[str, torch.Tensor]
    targets: torch.Tensor
    batch_size: int = 32
    shuffle: bool = False
    seed: int = 0
    drop_last: bool = False
    # Name of a (batch, seq) padding mask: each batch is cut to its longest row, so short
    # sentences padded to a fixed length do not pay for their padding when training.
    trim_to: str | None = None

    def __post_init__(self) -> None:
        sizes = {name: t.shape[0] for name, t in self.inputs.items()}
        if any(n != self.targets.shape[0] for n in sizes.values()):
            raise ValueError(f"inputs and targets differ in length: {sizes} vs {self.targets.shape[0]}")
        self._epoch = 0

    @property
    def num_items(self) -> int:
        return int(self.targets.shape[0])

    def __len__(self) -> int:
        n = self.num_items
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        n = self.num_items
        if self.shuffle:
            # A fresh, seeded order each epoch keeps training deterministic and resumable.
            gen = torch.Generator().manual_seed(self.seed * 100_003 + self._epoch)
            order = torch.randperm(n, generator=gen)
            self._epoch += 1
        else:
            order = torch.arange(n)
        starts = list(range(0, len(self) * self.batch_size, self.batch_size))
        if self.trim_to is not None and self.shuffle:
            order, starts = self._by_length(order, starts)
        for start in starts:
            idx = order[start : start + self.batch_size]
            batch = {k: v[idx] for k, v in self.inputs.items()}
            if self.trim_to is not None:
                batch = trim_padding(batch, self.trim_to)
            yield batch, self.targets[idx]

    def _by_length(self, order: torch.Tensor, starts: list[int]) -> tuple[torch.Tensor, list[int]]:
        """Group rows of similar length into batches (each window of 32 batches sorted by
        length), then shuffle the batch order: batches stay random, padding nearly vanishes."""
        assert self.trim_to is not None
        lengths = self.inputs[self.trim_to].sum(dim=1)[order]
        window = 32 * self.batch_size
        parts = []
        for w in range(0, len(order), window):
            chunk = order[w : w + window]
            parts.append(chunk[torch.argsort(lengths[w : w + window], stable=True)])
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self._epoch + 7)
        return torch.cat(parts), [starts[i] for i in torch.randperm(len(starts), generator=gen).tolist()]

    def subset(self, count: int, batch_size: int | None = None) -> Batches:
        """The first ``count`` items as a new, unshuffled set (e.g. for calibration)."""
        count = min(count, self.num_items)
        return Batches(
            {k: v[:count] for k, v in self.inputs.items()},
            self.targets[:count],
            batch_size=batch_size or self.batch_size,
            trim_to=self.trim_to,
        )

    def with_batch_size(self, batch_size: int) -> Batches:
        return Batches(self.inputs, self.targets, batch_size, self.shuffle, self.seed, self.drop_last, self.trim_to)

    def holdout(self, fraction: float = 0.1) -> tuple[Batches, Batches]:
        """``(train, validation)``: the last ``fraction`` of the items (at least one) held out.

        Model selection and early stopping read the validation part, never the task's
        evaluation set, which must stay unseen until the final score.

        Example:
            >>> import torch
            >>> train, val = Batches({"x": torch.zeros(10, 1)}, torch.arange(10), 4).holdout(0.2)
            >>> train.num_items, val.targets.tolist()
            (8, [8, 9])
        """
        n = self.num_items
        cut = n - max(1, int(n * fraction))
        train = Batches({k: v[:cut] for k, v in self.inputs.items()}, self.targets[:cut], self.batch_size,
                        self.shuffle, self.seed, self.drop_last, self.trim_to)
        val = Batches({k: v[cut:] for k, v in self.inputs.items()}, self.targets[cut:], max(32, self.batch_size),
                      trim_to=self.trim_to)
        return train, val


def trim_padding(inputs: Mapping[str, torch.Tensor], mask: str) -> Inputs:
    """Cut every (batch, seq, ...) input to the longest row of the padding ``mask``.

    Only trailing padding is removed, so a model that masks padding computes the same
    result (up to float rounding) at a fraction of the cost.

    Example:
        >>> import torch
        >>> out = trim_padding({"ids": torch.tensor([[5, 6, 0, 0]]), "mask": torch.tensor([[1, 1, 0, 0]])}, "mask")
        >>> out["ids"].tolist()
        [[5, 6]]
    """
    m = inputs[mask]
    width = max(1, int(m.sum(dim=1).max())) if m.numel() else m.shape[1]
    seq = m.shape[1]
    return {k: (v[:, :width] if v.dim() >= 2 and v.shape[1] == seq else v) for k, v in inputs.items()}


def token_inputs(inputs: Mapping[str, torch.Tensor]) -> list[str]:
    """Inputs whose second axis is a sequence that varies from call to call: integer tensors of two
    or more axes (token ids, attention masks, token types) as long as the first of them. Exports
    keep that axis dynamic; an integer input of another length (category ids) keeps its own.

    Example:
        >>> ids, cats = torch.zeros(1, 8, dtype=torch.long), torch.zeros(1, 5, dtype=torch.long)
        >>> token_inputs({"input_ids": ids, "mask": ids, "categories": cats, "pixels": torch.zeros(1, 3, 8, 8)})
        ['input_ids', 'mask']
    """
    ints = [n for n, t in inputs.items() if not t.is_floating_point() and t.dim() >= 2]
    return [n for n in ints if inputs[n].shape[1] == inputs[ints[0]].shape[1]]


def shorter(inputs: Mapping[str, torch.Tensor], names: list[str]) -> Inputs:
    """``inputs`` with the sequence axis of ``names`` cut to about half (at least 1): a second length
    to check a dynamic-sequence export on."""
    length = max(1, inputs[names[0]].shape[1] // 2)
    return {k: (v[:, :length] if k in names else v) for k, v in inputs.items()}


def longer(inputs: Mapping[str, torch.Tensor], names: list[str], limit: int | None = None) -> Inputs:
    """``inputs`` with the sequence axis of ``names`` half as long again (at most ``limit``): the
    new positions repeat the first ones (token ids, and masks that keep them)."""
    length = inputs[names[0]].shape[1]
    extra = max(1, length // 2)
    if limit is not None:
        extra = max(0, min(extra, limit - length))
    return {k: (torch.cat([v, v[:, :extra]], dim=1) if k in names else v) for k, v in inputs.items()}


def batch_of(inputs: Mapping[str, torch.Tensor], size: int) -> Inputs:
    """Repeat or cut batch-1 example inputs to ``size`` rows (for throughput runs)."""
    out = {}
    for name, t in inputs.items():
        reps = -(-size // t.shape[0])
        out[name] = t.repeat(reps, *([1] * (t.dim() - 1)))[:size].contiguous()
    return out


def primary_output(output: object) -> torch.Tensor:
    """The tensor a metric reads from a model's output (tensor, tuple, dict or ModelOutput): the
    first one with a batch axis, so a loss returned first (``{"loss": ..., "logits": ...}``) is passed over.

    Example:
        >>> primary_output({"loss": torch.tensor(0.5), "logits": torch.ones(2, 3)}).shape
        torch.Size([2, 3])
    """
    if isinstance(output, torch.Tensor):
        return output
    values = list(output.values()) if isinstance(output, Mapping) else output
    if isinstance(values, (tuple, list)):
        found = [t for t in (_first_tensor(v) for v in values) if t is not None]
        batched = [t for t in found if t.dim() > 0]
        if batched or found:
            return (batched or found)[0]
    raise TypeError(f"cannot find a tensor in model output of type {type(output).__name__}")


def _first_tensor(value: object) -> torch.Tensor | None:
    try:
        return primary_output(value)
    except TypeError:
        return None
