"""Quantization-aware training: fake quantization with a straight-through estimator.

Every Conv/Linear gets int8 fake quantization of its weight and input (:mod:`._qat_wrap`); per
tensor, Conv-BatchNorm pairs are folded first (:mod:`._qat_fold`); transformers' Linear inputs
can be smoothed (:mod:`._qat_smooth`). The model is fine-tuned with the shared training engine,
then exported as it is: OpenVINO turns the fake-quantize ops into int8 FakeQuantize (int8 weights
on disk, int8 kernels), the ONNX exporter into QuantizeLinear/DequantizeLinear pairs that ONNX
Runtime runs in int8.

A task with a transfer set (stored outputs of the original model, e.g. MiniLM's) trains on it
the way distillation does, dropout off and embedding tables fixed: the model learns to match
the original's outputs through the int8 grid, which can recover fidelity post-training
quantization loses (BENCHMARKS.md).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
from torch import nn

from slimkit.core.data import Inputs
from slimkit.core.task import Task, run_model
from slimkit.kernels.batchnorm import reestimate
from slimkit.techniques.quantize._qat_fold import fold_batchnorms
from slimkit.techniques.quantize._qat_smooth import SMOOTH_ALPHA, smooth_inputs
from slimkit.techniques.quantize._qat_wrap import (
    RANGE_FRACTIONS,
    RANGE_SEARCH_ITEMS,
    FakeQuant,
    insert_fake_quant,
    strip_fake_quant,
)
from slimkit.train.engine import TrainConfig, fit
from slimkit.train.losses import distill_loss
from slimkit.train.modes import frozen_embeddings, no_dropout

# Importable from here, where the QAT pieces were before they got modules of their own.
__all__ = ["RANGE_FRACTIONS", "RANGE_SEARCH_ITEMS", "SMOOTH_ALPHA", "FakeQuant", "fold_batchnorms",
           "insert_fake_quant", "qat_model", "smooth_inputs", "strip_fake_quant"]


def _observe(model: nn.Module, items: Sequence[Inputs], observing: bool) -> None:
    for m in model.modules():
        if isinstance(m, FakeQuant):
            m.observing = observing
    if observing:
        with torch.no_grad():
            for item in items:
                run_model(model, item)
        for m in model.modules():
            if isinstance(m, FakeQuant):
                m.pick_range()
        _observe(model, items, False)


def qat_model(model: nn.Module, task: Task, calibration: Sequence[Inputs], epochs: int, lr: float,
              seed: int = 0, exclude: Sequence[str] = (), per_channel: bool = True,
              smooth: float | None = None, attention: bool = False, weight_max: int = 127,
              progress: Callable[[str], None] | None = None) -> tuple[nn.Module, dict[str, object]]:
    """Fake-quantize a copy of ``model``, calibrate, fine-tune it with :func:`fit`; returns (model, details).

    ``per_channel=False`` folds Conv-BatchNorm pairs first and quantizes each weight per tensor
    (see the module docstring). ``smooth`` (an alpha, for transformers) smooths every Linear's
    input before calibration; ``attention`` also quantizes attention queries and keys (see
    :func:`insert_fake_quant`). ``weight_max`` is the largest weight code: 127, or 64 for CPUs
    whose int8 dot product saturates (:func:`~slimkit.measure.env.int8_dot_saturates`).
    Training reads the task's transfer set where it has one (with
    :func:`~slimkit.train.losses.distill_loss`, dropout off, embeddings fixed), else its
    training set and loss. ``epochs=0`` only calibrates. ``progress`` gets a line per epoch.

    Example:
        >>> import torch
        >>> from slimkit.core.data import Batches
        >>> from slimkit.core.task import Metric, Task, accuracy
        >>> x, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
        >>> d = Batches({"input": x}, y, 8)
        >>> t = Task("toy", torch.nn.Sequential(torch.nn.Linear(4, 2)), {"input": x[:1]}, d, d, d,
        ...          Metric("acc", accuracy), torch.nn.functional.cross_entropy)
        >>> m, info = qat_model(t.build_model(), t, [{"input": x[:8]}], epochs=1, lr=1e-3)
        >>> info["layers"]
        1
    """
    model = copy.deepcopy(model).eval()
    folded = [] if per_channel else fold_batchnorms(model, task.example_inputs)
    # Children only: a bare Linear/Conv is left as is.
    wrapped = insert_fake_quant(model, exclude, per_channel, attention, weight_max)
    model.eval()
    smoothed = smooth_inputs(model, calibration, smooth) if smooth else 0
    _observe(model, calibration, True)
    history = _train(model, task, epochs, lr, seed, progress) if epochs else []
    # Fine-tuning moved the weights under fake quantization; the BatchNorm statistics the runtime
    # folds into them are recomputed for those weights (a small momentum leaves them stale).
    renormed = reestimate(model, task.calibration_data) if epochs else 0
    transfer = task.transfer_data is not None
    model.eval()
    fq = [m for m in model.modules() if isinstance(m, FakeQuant)]
    for m in fq:
        m.freeze()
    info: dict[str, object] = {"layers": len(wrapped), "epochs": epochs, "lr": lr, "loss_history": history,
                               "weights": "per-channel" if per_channel else "per-tensor",
                               "weight_max": weight_max,
                               "data": "transfer set (original model's outputs)" if transfer else "training set",
                               "smooth_alpha": smooth, "smoothed_layers": smoothed,
                               "int8_attention_inputs": sum(1 for m in fq if m.out_lo is not None),
                               "batchnorms_reestimated": renormed}
    if not per_channel:
        info["folded_batchnorms"] = len(folded)
        info["clipped_ranges"] = sum(1 for m in fq if float(m.range_fraction) < 1.0)
    return model, info


def _train(model: nn.Module, task: Task, epochs: int, lr: float, seed: int,
           progress: Callable[[str], None] | None) -> list[float]:
    """Fine-tune the fake-quantized ``model`` in place: on the transfer set against the original's
    outputs where the task has one, else on the labels; returns the per-epoch losses."""
    cfg = TrainConfig(epochs=epochs, lr=lr, seed=seed)

    def on_epoch(epoch: int, row: dict[str, float]) -> None:
        if progress is not None:
            progress(f"  QAT epoch {epoch}/{epochs}: loss {row.get('loss', float('nan')):.4f}")

    if task.transfer_data is not None:
        with no_dropout(model), frozen_embeddings(model):
            result = fit(model, task.transfer(), distill_loss(task), cfg, on_epoch=on_epoch)
    else:
        result = fit(model, task.train_data, task.loss, cfg, on_epoch=on_epoch)
    return [round(h.get("loss", float("nan")), 5) for h in result.history]
