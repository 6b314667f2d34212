"""``optimize_onnx``: ONNX Runtime's graph optimizations, saved as an ONNX file and checked."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slimkit._optional import require
from slimkit.core.data import Inputs
from slimkit.core.files import atomic_path
from slimkit.errors import ExportError, ParityError, UsageError
from slimkit.export.parity import Parity, compare

# ORT's levels, from portable to machine-specific:
#   basic:    constant folding, redundant-node removal, Conv+BN/Conv+Add/Conv+Mul folding.
#             The output is standard ONNX any runtime can read.
#   extended: adds fusions into ONNX Runtime contrib ops (com.microsoft FusedConv, Gelu,
#             LayerNormalization, attention, ...), so the file needs ONNX Runtime to run.
#   all:      adds layout optimizations (NCHWc blocked ops sized for this CPU's vector
#             width), so the file should only run with ONNX Runtime on the same kind of CPU.
_LEVELS = {"basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}

# The saved graph computes the same function with fused kernels; float32 results differ
# only in rounding order, far below this.
_RTOL = 1e-4
_MIN_COSINE = 0.99999


@dataclass(frozen=True)
class OnnxOptResult:
    """The optimized file, its node counts before/after (top-level graph), and the parity check."""

    path: Path
    level: str
    nodes_before: int
    nodes_after: int
    ops_before: dict[str, int] = field(default_factory=dict)
    ops_after: dict[str, int] = field(default_factory=dict)
    parity: Parity | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "level": self.level,
            "nodes_before": self.nodes_before,
            "nodes_after": self.nodes_after,
            "ops_before": dict(self.ops_before),
            "ops_after": dict(self.ops_after),
            "parity": self.parity.to_dict() if self.parity else None,
        }


def _op_counts(path: Path) -> dict[str, int]:
    onnx = require("onnx", "ONNX graph optimization")
    # Only the graph structure is needed; skipping external weights keeps this cheap.
    graph = onnx.load(str(path), load_external_data=False).graph
    counts = Counter(f"{n.domain}.{n.op_type}" if n.domain not in ("", "ai.onnx") else n.op_type
                     for n in graph.node)
    return dict(sorted(counts.items()))


def _options(ort: Any, level: str, threads: int) -> Any:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _LEVELS[level]) \
        if level in _LEVELS else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    # ORT warns that level "all" output is hardware-specific; that is documented above.
    opts.log_severity_level = 3
    return opts


def _run(ort: Any, path: Path, inputs: Inputs, threads: int) -> dict[str, np.ndarray]:
    """Run a file exactly as written: no further optimization, so the saved graph is what is checked."""
    session = ort.InferenceSession(str(path), _options(ort, "none", threads),
                                   providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    missing = [n for n in names if n not in inputs]
    if missing:
        raise UsageError(f"check_inputs lacks the ONNX model's input(s) {', '.join(missing)}",
                         hint=f"give check_inputs named {', '.join(names)}")
    feed = {n: inputs[n].detach().cpu().numpy() for n in names}
    outputs = [o.name for o in session.get_outputs()]
    return dict(zip(outputs, session.run(None, feed), strict=True))


def _check(ort: Any, original: Path, optimized: Path, inputs: Inputs, level: str, threads: int) -> Parity:
    ref = _run(ort, original, inputs, threads)
    got = _run(ort, optimized, inputs, threads)
    if set(ref) != set(got):
        raise ParityError(f"the {level}-optimized ONNX model has outputs {sorted(got)}, "
                          f"the original {sorted(ref)}", hint="report the model; keep the original file")
    worst = Parity(0.0, 1.0, 0.0)
    for name, value in ref.items():
        parity = compare(torch.from_numpy(np.asarray(value)), torch.from_numpy(np.asarray(got[name])))
        atol = _RTOL * max(parity.reference_scale, 1e-6)
        if parity.max_abs_diff > atol or parity.cosine < _MIN_COSINE:
            raise ParityError(
                f"the {level}-optimized ONNX model's output '{name}' does not match the original ONNX "
                f"model: max abs diff {parity.max_abs_diff:.3g} (tolerance {atol:.3g}), cosine "
                f"{parity.cosine:.6f} (minimum {_MIN_COSINE})",
                hint="use a lower level (e.g. 'basic') or keep the original file",
            )
        worst = Parity(max(worst.max_abs_diff, parity.max_abs_diff), min(worst.cosine, parity.cosine),
                       max(worst.reference_scale, parity.reference_scale))
    return worst


def optimize_onnx(onnx_path: str | Path, out_path: str | Path, level: str = "extended", threads: int = 1,
                  check_inputs: Inputs | None = None) -> OnnxOptResult:
    """Apply ONNX Runtime's graph optimizations offline and save the result as an ONNX file.

    ``level`` is ``"basic"`` (portable standard ONNX), ``"extended"`` (adds ONNX Runtime
    contrib ops: the file then needs ONNX Runtime) or ``"all"`` (adds layout-specific ops
    such as NCHWc tuned to this CPU: run the file only with ONNX Runtime on the same kind of
    hardware). With ``check_inputs`` both files run in ONNX Runtime, as written, and every
    output is compared; a mismatch raises :class:`~slimkit.errors.ParityError` and nothing
    is written. ``out_path`` is written atomically (it may equal ``onnx_path``).

    Example:
        >>> import tempfile, pathlib, torch
        >>> from slimkit.export import export_onnx
        >>> d = pathlib.Path(tempfile.mkdtemp()); x = {"input": torch.randn(2, 4)}
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU()).eval()
        >>> _ = export_onnx(net, x, d / "m.onnx")
        >>> r = optimize_onnx(d / "m.onnx", d / "m.opt.onnx", "basic", check_inputs=x)
        >>> r.path.exists() and r.nodes_after <= r.nodes_before and r.parity.cosine > 0.9999
        True
    """
    ort = require("onnxruntime", "ONNX graph optimization")
    if level not in _LEVELS:
        raise UsageError(f"unknown ONNX Runtime optimization level '{level}'",
                         hint=f"choose one of: {', '.join(_LEVELS)}")
    if threads < 1:
        raise UsageError(f"threads must be at least 1, not {threads}")
    src, out = Path(onnx_path), Path(out_path)
    if not src.is_file():
        raise UsageError(f"no ONNX file at {src}")
    ops_before = _op_counts(src)
    with atomic_path(out) as tmp:
        opts = _options(ort, level, threads)
        opts.optimized_model_filepath = str(tmp)
        # ORT picks the format from the file extension; the temporary name has none it knows.
        opts.add_session_config_entry("session.save_model_format", "ONNX")
        try:
            ort.InferenceSession(str(src), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types
            raise ExportError(f"ONNX Runtime could not load {src}: {str(exc).splitlines()[0][:300]}",
                              hint="check the file with onnx.checker.check_model") from exc
        ops_after = _op_counts(tmp)
        parity = _check(ort, src, tmp, check_inputs, level, threads) if check_inputs is not None else None
    return OnnxOptResult(out, level, sum(ops_before.values()), sum(ops_after.values()),
                         ops_before, ops_after, parity)
