"""torch -> ONNX with a dynamic batch axis (and sequence axis for token inputs), then a parity check."""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import torch
from torch import nn

from slimkit._optional import require
from slimkit.core.data import Inputs, batch_of, longer, shorter, token_inputs
from slimkit.core.files import atomic_path
from slimkit.core.task import run_model
from slimkit.errors import ExportError, resource_error
from slimkit.export.parity import Parity, check_parity

OPSET = 18


def _operator_of(exc: BaseException) -> str:
    """Best effort: the operator named in an exporter's error message."""
    text = str(exc)
    for marker in ("aten::", "aten.", "torch.ops."):
        if marker in text:
            start = text.index(marker)
            return text[start:].split()[0].strip("'\",.:()")
    return "unknown operator"


def max_length(model: nn.Module) -> int | None:
    """The longest sequence the model takes, where its config says (a transformer's position table)."""
    config = getattr(model, "config", None)
    value = getattr(config, "max_position_embeddings", None)
    return value if isinstance(value, int) and value > 1 else None


def _export(model: nn.Module, inputs: Inputs, path: Path, dynamo: bool, sequence: list[str],
            seq_max: int | None = None) -> None:
    """One exporter's run; ``sequence``: inputs whose axis 1 stays dynamic too, up to ``seq_max``."""
    names = list(inputs)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        if dynamo:
            batch = torch.export.Dim("batch", min=1, max=4096)
            seq = torch.export.Dim("seq", min=1, max=seq_max or 4096) if sequence else None
            torch.onnx.export(
                model, (), str(path), kwargs=dict(inputs), input_names=names, output_names=["output"],
                dynamo=True, external_data=False, opset_version=OPSET,
                dynamic_shapes={n: {0: batch, 1: seq} if n in sequence else {0: batch} for n in names},
                verbose=False,
            )
        else:
            # The TorchScript exporter traces positional arguments only.
            axes: dict[str, dict[int, str]] = {n: {0: "batch", 1: "seq"} if n in sequence else {0: "batch"}
                                               for n in names}
            axes["output"] = {0: "batch"}
            torch.onnx.export(
                Positional(model, names).eval(), tuple(inputs.values()), str(path), input_names=names,
                output_names=["output"], dynamo=False, opset_version=17, dynamic_axes=axes,
            )


def _require_dynamic_batch(path: Path) -> None:
    onnx = require("onnx")
    graph = onnx.load(str(path), load_external_data=False).graph
    for inp in graph.input:
        dims = inp.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value"):
            raise ExportError(f"the exporter fixed the batch axis of input '{inp.name}' to {dims[0].dim_value}")


class Positional(nn.Module):
    """Take inputs positionally (tracing exporters need that) and return the primary output."""

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return run_model(self.model, dict(zip(self.names, args, strict=True)))


class _Primary(nn.Module):
    """Expose only the primary output tensor, so every artifact has one output named 'output'."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        return run_model(self.model, inputs)


def export_onnx(model: nn.Module, inputs: Inputs, path: str | Path, *, check: bool = True,
                dynamo: bool | None = None) -> Parity | None:
    """Export ``model`` called as ``model(**inputs)`` to ONNX at ``path`` and check parity.

    The batch axis of every input is dynamic, and the sequence axis of token inputs
    (:func:`~slimkit.core.data.token_inputs`) where the exported graph computes the same at
    another length (checked; else it keeps the example's length). The torch.export-based exporter
    is tried first; models it cannot trace fall back to the TorchScript exporter (``dynamo=True``
    or ``False`` picks one exporter only: the TorchScript one is several times faster to run).
    The parity check runs the file with ONNX Runtime (when installed) on ``inputs``.

    Example:
        >>> import torch, tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "m.onnx"
        >>> parity = export_onnx(torch.nn.Linear(4, 2).eval(), {"input": torch.randn(2, 4)}, p)
        >>> p.exists() and parity.cosine > 0.9999
        True
    """
    require("onnx", "ONNX export")
    path = Path(path)
    model = model.eval()
    wrapped = _Primary(model).eval()
    # torch.export specialises any dimension of size 1, so trace with a batch of 2 to keep
    # the batch axis dynamic.
    trace_inputs = batch_of(inputs, 2)
    sequence = [n for n in token_inputs(inputs) if inputs[n].shape[1] > 1]
    errors: list[BaseException] = []
    with atomic_path(path) as tmp:
        # Each exporter with the sequence axis dynamic first, then with the example's length.
        attempts = [(d, s) for s in ((sequence, []) if sequence else ([],))
                    for d in ((True, False) if dynamo is None else (dynamo,))]
        for use_dynamo, seq in attempts:
            try:
                _export(wrapped, trace_inputs, tmp, use_dynamo, seq, max_length(model))
                _require_dynamic_batch(tmp)
                if seq and not _same_at_another_length(model, inputs, seq, tmp):
                    continue
                break
            except Exception as exc:  # exporters raise many types; we report them together
                if (resource := resource_error(exc)) is not None:
                    raise resource from exc  # a full disk is not an operator ONNX lacks
                errors.append(exc)
        else:
            raise ExportError(
                f"ONNX export failed at {_operator_of(errors[0])}: {str(errors[0]).splitlines()[0][:300]}",
                hint="the model uses an operator ONNX cannot express; replace it or use target 'torch'",
            )
        parity = check_onnx_parity(model, inputs, tmp) if check else None
    return parity


def _same_at_another_length(model: nn.Module, inputs: Inputs, sequence: list[str], path: Path) -> bool:
    """Whether the graph exported with a dynamic sequence computes what the model does at a shorter
    and a longer length (a trace can bake the example's length into a reshape or a mask)."""
    try:
        for other in (shorter(inputs, sequence), longer(inputs, sequence, max_length(model))):
            check_onnx_parity(model, other, path)  # raises ParityError when they differ
    except Exception:  # a mismatch, or the runtime refused the other length: not dynamic after all
        return False
    return True


def check_onnx_parity(model: nn.Module, inputs: Inputs, path: Path) -> Parity | None:
    """Run the ONNX file with ONNX Runtime and compare with torch; None without ONNX Runtime."""
    try:
        ort = require("onnxruntime")
    except Exception:
        return None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {n: t.numpy() for n, t in inputs.items() if n in {i.name for i in session.get_inputs()}}
    got = torch.from_numpy(session.run(None, feed)[0])
    with torch.no_grad():
        ref = run_model(model, inputs)
    return check_parity(ref, got, "the exported ONNX model")
