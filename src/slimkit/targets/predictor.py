"""A deployed model called like the original one: positional or named inputs, tensors or NumPy arrays,
any batch size, on whichever runtime holds it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slimkit.errors import ShapeError, UsageError
from slimkit.targets.base import Deployed

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "int64": torch.int64,
           "int32": torch.int32, "bool": torch.bool, "uint8": torch.uint8, "int8": torch.int8}


@dataclass
class Predictor:
    """Runs a deployed artifact on the inputs the original model took.

    Positional inputs follow ``input_names`` (the original ``forward()``'s order); an input the
    exported graph dropped (one the model never reads) is accepted and left out. NumPy inputs give
    a NumPy output, tensors a tensor. Inputs are cast to the dtypes the artifact expects, and a
    batch larger than an artifact with a fixed batch size takes is run in slices. The output is the
    model's primary output (its logits or embeddings), as every artifact returns it.

    Example:
        >>> import tempfile, torch
        >>> from pathlib import Path
        >>> from slimkit.targets import get_target
        >>> d = get_target("onnxruntime").deploy(torch.nn.Linear(4, 2), {"input": torch.randn(1, 4)},
        ...                                      Path(tempfile.mkdtemp()), 1)
        >>> Predictor(d, ["input"])(np.zeros((3, 4), dtype=np.float64)).shape
        (3, 2)
    """

    deployed: Deployed
    input_names: Sequence[str]
    manifest: dict[str, Any] = field(default_factory=dict)
    folder: Path | None = None  # the artifact folder: preprocessing files (a tokenizer's) live there

    @property
    def target(self) -> str:
        return self.deployed.target

    @property
    def precision(self) -> str | None:
        return self.deployed.precision()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        named = self._named(args, kwargs)
        as_numpy = any(isinstance(v, np.ndarray) for v in named.values())
        inputs = {k: self._tensor(k, v) for k, v in named.items()}
        out = self._run(inputs)
        return out.numpy() if as_numpy else out

    def _named(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        names = list(self.input_names)
        if len(args) == 1 and isinstance(args[0], dict) and not kwargs:
            kwargs, args = dict(args[0]), ()  # a batch dict (an HF tokenizer's output)
        if len(args) > len(names):
            raise UsageError(f"the model takes {len(names)} input(s) ({', '.join(names)}), {len(args)} were given")
        named = dict(zip(names, args, strict=False))
        for k, v in kwargs.items():
            if k in named:
                raise UsageError(f"input '{k}' given twice (by position and by name)")
            named[k] = v
        wanted = set(self.deployed.input_shapes) or set(names)
        # An exporter drops inputs the graph never reads (a mask the model ignores): the original
        # model took them, so they are accepted and left out.
        named = {k: v for k, v in named.items() if k in wanted or k not in names}
        unknown = sorted(set(named) - wanted)
        if unknown:
            raise UsageError(f"the model takes no input named {', '.join(unknown)}",
                             hint=f"its inputs are {', '.join(sorted(wanted))}")
        missing = sorted(wanted - set(named))
        if missing:
            raise UsageError(f"input(s) {', '.join(missing)} missing", hint=f"give {', '.join(sorted(wanted))}")
        return named

    def _tensor(self, name: str, value: Any) -> torch.Tensor:
        if isinstance(value, np.ndarray):
            if value.dtype.kind not in "biuf":
                raise ShapeError(f"input '{name}' holds {value.dtype} values, not numbers",
                                 hint="give numeric arrays (tokenize text, decode images first)")
            t = torch.from_numpy(np.ascontiguousarray(value))
        elif isinstance(value, torch.Tensor):
            t = value.detach().cpu()
        else:
            try:
                t = torch.as_tensor(value)
            except (TypeError, ValueError, RuntimeError):
                raise ShapeError(f"input '{name}' is a {type(value).__name__}, not an array",
                                 hint="give tensors or NumPy arrays") from None
        dtype = _DTYPES.get(self.deployed.input_dtypes.get(name, ""))
        return t.to(dtype) if dtype is not None and t.dtype != dtype else t

    def _run(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        fixed = {self._fixed_batch(k) for k in inputs} - {None}
        sizes = {v.shape[0] if v.dim() else 1 for v in inputs.values()}
        if len(sizes) > 1:
            raise ShapeError(f"the inputs have different batch sizes ({sorted(sizes)})")
        n = sizes.pop()
        step = fixed.pop() if fixed else None
        with torch.no_grad():
            if step is None or step == n:
                return self.deployed.run(inputs).detach()
            if n % step:
                raise ShapeError(f"this artifact takes batches of exactly {step}; {n} items do not divide into them",
                                 hint="deploy again (slimkit exports a dynamic batch axis), or pad the batch")
            parts = [self.deployed.run({k: v[i:i + step] for k, v in inputs.items()}) for i in range(0, n, step)]
        return torch.cat(parts).detach()

    def _fixed_batch(self, name: str) -> int | None:
        shape = self.deployed.input_shapes.get(name) or [None]
        return shape[0] if shape else None
