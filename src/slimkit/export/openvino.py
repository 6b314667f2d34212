"""ONNX -> OpenVINO IR and torch -> OpenVINO IR, each with a dynamic batch (and sequence axis for
token inputs) and a parity check."""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimkit._optional import require
from slimkit.core.data import Inputs, longer, shorter, token_inputs
from slimkit.core.task import run_model
from slimkit.errors import ExportError, resource_error
from slimkit.export.onnx import Positional, _operator_of, max_length
from slimkit.export.parity import Parity, check_parity


def _dynamic_batch(ov: Any, model: Any, sequence: Sequence[str] = ()) -> None:
    """Make the batch axis dynamic, and axis 1 of the ``sequence`` inputs (token ids, masks)."""
    shapes = {}
    for port in model.inputs:
        shape = port.get_partial_shape()
        if shape.rank.is_static and shape.rank.get_length() > 0:
            shape[0] = ov.Dimension(-1)
            if port.get_any_name() in sequence and shape.rank.get_length() > 1:
                shape[1] = ov.Dimension(-1)
            shapes[port.get_any_name()] = shape
    if shapes:
        model.reshape(shapes)


def save_ir(ov: Any, model: Any, xml: Path, *, compress_to_fp16: bool = False) -> None:
    """Write the IR pair atomically: both files land together or not at all.

    fp32 weights by default on purpose: compress_to_fp16 would change numerics behind the
    user's back; only an explicitly half-precision artifact asks for it.
    """
    xml = Path(xml)
    xml.parent.mkdir(parents=True, exist_ok=True)
    tmpdir = Path(tempfile.mkdtemp(prefix=".ir", dir=xml.parent))
    try:
        ov.save_model(model, str(tmpdir / xml.name), compress_to_fp16=compress_to_fp16)
        # The .bin lands first, so a reader never finds an .xml without its weights.
        os.replace(tmpdir / xml.with_suffix(".bin").name, xml.with_suffix(".bin"))
        os.replace(tmpdir / xml.name, xml)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def check_openvino_parity(model: nn.Module, inputs: Inputs, xml: Path) -> Parity:
    """Compile the IR in f32 and compare its output with the torch model's."""
    ov = require("openvino")
    compiled = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    names = {p.get_any_name() for p in compiled.inputs}
    result = compiled({n: t.numpy() for n, t in inputs.items() if n in names})
    got = torch.from_numpy(result[compiled.outputs[0]])
    with torch.no_grad():
        ref = run_model(model, inputs)
    return check_parity(ref, got, "the exported OpenVINO model")


def onnx_to_openvino(onnx_path: str | Path, xml: str | Path, model: nn.Module | None = None,
                     inputs: Inputs | None = None) -> Parity | None:
    """Convert an ONNX file to OpenVINO IR (``.xml`` + ``.bin``); check parity when given the model.

    Example:
        >>> import torch, tempfile, pathlib
        >>> from slimkit.export import export_onnx
        >>> d = pathlib.Path(tempfile.mkdtemp()); net = torch.nn.Linear(4, 2).eval()
        >>> x = {"input": torch.randn(2, 4)}
        >>> _ = export_onnx(net, x, d / "m.onnx")
        >>> onnx_to_openvino(d / "m.onnx", d / "m.xml", net, x).cosine > 0.9999
        True
    """
    ov = require("openvino", "OpenVINO export")
    try:
        ov_model = ov.convert_model(str(onnx_path))
    except Exception as exc:
        if (resource := resource_error(exc)) is not None:
            raise resource from exc
        raise ExportError(f"OpenVINO could not read {onnx_path}: {str(exc).splitlines()[0][:300]}",
                          hint="try the direct torch -> OpenVINO path (torch_to_openvino)") from exc
    _dynamic_batch(ov, ov_model)
    save_ir(ov, ov_model, Path(xml))
    if model is not None and inputs is not None:
        return check_openvino_parity(model, inputs, Path(xml))
    return None


def torch_to_openvino(model: nn.Module, inputs: Inputs, xml: str | Path, *, check: bool = True) -> Parity | None:
    """Convert a torch model directly to OpenVINO IR with a dynamic batch axis, then check parity.

    Example:
        >>> import torch, tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp()); net = torch.nn.Linear(4, 2).eval()
        >>> torch_to_openvino(net, {"input": torch.randn(2, 4)}, d / "m.xml").cosine > 0.9999
        True
    """
    ov = require("openvino", "OpenVINO export")
    model = model.eval()
    sequence = [n for n in token_inputs(inputs) if inputs[n].shape[1] > 1]
    # The sequence axis of token inputs dynamic where the IR computes the same at another length.
    for seq in ((sequence, []) if sequence else ([],)):
        ov_model = _convert(ov, model, inputs, seq)
        _dynamic_batch(ov, ov_model, seq)
        save_ir(ov, ov_model, Path(xml))
        if seq:
            try:
                for other in (shorter(inputs, seq), longer(inputs, seq, max_length(model))):
                    check_openvino_parity(model, other, Path(xml))
            except Exception:  # a mismatch, or the plugin refused the other length
                continue
        break
    return check_openvino_parity(model, inputs, Path(xml)) if check else None


def _convert(ov: Any, model: nn.Module, inputs: Inputs, sequence: Sequence[str]) -> Any:
    """The OpenVINO model of ``model`` traced on ``inputs``, batch (and ``sequence`` axes) dynamic."""
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            names = list(inputs)
            shapes = [ov.PartialShape([-1, *([-1] if n in sequence else t.shape[1:2]), *t.shape[2:]])
                      for n, t in inputs.items()]
            ov_model = ov.convert_model(
                Positional(model, names).eval(), example_input=tuple(inputs.values()), input=shapes
            )
        for port, name in zip(ov_model.inputs, names, strict=False):
            port.get_tensor().set_names({name})
    except Exception as exc:
        if (resource := resource_error(exc)) is not None:
            raise resource from exc
        raise ExportError(
            f"OpenVINO conversion failed at {_operator_of(exc)}: {str(exc).splitlines()[0][:300]}",
            hint="export to ONNX first and convert that (onnx_to_openvino), or use another target",
        ) from exc
    return ov_model
