"""The quantize step's configuration and its versioned JSON form."""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import ClassVar

from slimkit.core.config import StepConfig
from slimkit.errors import UsageError

SCHEMES = ("int8-dynamic", "int8-static", "int8-weight-only", "int4-weight-only", "fp16", "bf16", "fp8")
CALIBRATIONS = ("minmax", "percentile", "mse", "entropy")
BUILTIN_TARGETS = ("torch", "onnxruntime", "openvino", "torch-compile", "tensorrt")
# Options a plug-in quantizer may take, by config field (see Quantizer.options).
OPTIONS = ("per_channel", "group_size", "samples", "smooth_quant", "bias_correction", "exclude",
           "outlier_weight_only", "max_drop")


@dataclass(frozen=True)
class QuantizeConfig(StepConfig):
    """How to quantize a model for one target.

    ``calibration`` (int8-static only) is ``None`` for the backend's own default, else one of
    minmax, percentile, mse, entropy. ``samples`` calibration items are drawn from the task's
    calibration set, topped up from its training inputs when that set is smaller.
    ``smooth_quant`` ``None`` means "on for transformers" (NNCF's SmoothQuant after training;
    with ``qat_epochs`` on OpenVINO, the same migration of input ranges into the weights before
    quantization-aware training); ``bias_correction`` is NNCF's fast
    bias correction. ``exclude`` names layers kept in float;
    ``outlier_weight_only`` (int8-static on OpenVINO; ``None`` means "on for transformers")
    gives the layers whose inputs carry token-sparse outliers (found from the calibration data)
    int8 weights only, with no static activation range, instead of full int8;
    ``max_drop`` turns on the accuracy-aware mode; ``qat_epochs`` > 0 fine-tunes with fake
    quantization before conversion.

    Example:
        >>> import json
        >>> cfg = QuantizeConfig("int8-static", "openvino", calibration="minmax", samples=64)
        >>> QuantizeConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
        True
    """

    TYPE: ClassVar[str] = "quantize"

    scheme: str = "int8-static"
    target: str = "openvino"
    calibration: str | None = None
    samples: int = 300
    per_channel: bool = True
    group_size: int = 128
    smooth_quant: bool | None = None
    bias_correction: bool = True
    exclude: tuple[str, ...] = ()
    outlier_weight_only: bool | None = None
    max_drop: float | None = None
    qat_epochs: int = 0
    qat_lr: float = 1e-4
    sensitivity: bool = False  # also measure each layer's own effect (the report's sensitivity table)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.scheme not in SCHEMES:
            raise UsageError(f"unknown quantization scheme '{self.scheme}'", hint=f"known: {', '.join(SCHEMES)}")
        if self.calibration is not None and self.calibration not in CALIBRATIONS:
            raise UsageError(f"unknown calibration method '{self.calibration}'",
                             hint=f"known: {', '.join(CALIBRATIONS)}")
        if self.calibration is not None and self.scheme != "int8-static":
            raise UsageError(f"--calibration applies to int8-static, not {self.scheme}",
                             hint="drop --calibration or use --scheme int8-static")
        if self.outlier_weight_only and (self.scheme != "int8-static" or self.target != "openvino"):
            raise UsageError("outlier layers with int8 weights apply to int8-static on openvino",
                             hint="drop the outlier option or use --scheme int8-static --target openvino")
        if self.samples < 1:
            raise UsageError(f"samples must be >= 1, got {self.samples}")
        if self.group_size < 1 and self.group_size != -1:
            raise UsageError(f"--group-size must be >= 1 (or -1 for one group per output channel), got "
                             f"{self.group_size}", hint="e.g. --group-size 32, 64 or 128")
        if self.max_drop is not None and not 0 <= self.max_drop < math.inf:  # also NaN
            raise UsageError(f"--max-drop must be a number >= 0, got {self.max_drop}",
                             hint="the largest metric drop accepted, e.g. 0.5 (points) or 0.005 (cosine)")
        if self.qat_epochs < 0:
            raise UsageError(f"qat epochs must be >= 0, got {self.qat_epochs}")
        if self.sensitivity and self.qat_epochs:
            raise UsageError("the per-layer sensitivity table is computed for post-training quantization, "
                             "not after quantization-aware training", hint="use --qat or --sensitivity, not both")
        if not 0 < self.qat_lr < math.inf:  # also NaN
            raise UsageError(f"the QAT learning rate must be a finite number > 0, got {self.qat_lr}")
        if self.qat_epochs and self.scheme != "int8-static":
            raise UsageError(f"quantization-aware training produces int8-static models, not {self.scheme}",
                             hint="use --scheme int8-static with --qat")
        if self.qat_epochs and self.max_drop is not None:
            raise UsageError("--max-drop (accuracy-aware float fallback) is not applied after quantization-aware "
                             "training", hint="use --qat or --max-drop, not both")
        self.refuse_unused()

    def refuse_unused(self, given: Collection[str] = ()) -> None:
        """Refuse an option this scheme on this target does not use: set away from its default, or
        named in ``given`` (the options a caller was given explicitly, even at their default value)."""
        for option, where in self._unused_options(given):
            # Accepted and recorded in the recipe, these changed nothing: say so instead.
            raise UsageError(f"{option} applies to {where}, not to {self.scheme} on {self.target}"
                             + (" with --qat" if self.qat_epochs else ""), hint=f"drop {option.split(' ')[0]}")

    def _unused_options(self, given: Collection[str] = ()) -> list[tuple[str, str]]:
        """Options set (away from their defaults, or in ``given``) that this scheme on this target does
        not use (the quantizer a plug-in target registers says which options it takes: see ``check``)."""
        s, t, qat = self.scheme, self.target, bool(self.qat_epochs)
        if t not in BUILTIN_TARGETS:
            return []
        static = s == "int8-static" and t in ("openvino", "onnxruntime")
        unused = []
        if not self.per_channel and not (static or (s, t) == ("int8-dynamic", "onnxruntime")):
            unused.append(("--per-tensor (per_channel=False)",
                           "int8-static on openvino/onnxruntime and int8-dynamic on onnxruntime"))
        if (self.group_size != 128 or "group_size" in given) and (s, t) != ("int4-weight-only", "openvino"):
            unused.append(("--group-size", "int4-weight-only on openvino"))
        if (self.samples != 300 or "samples" in given) and not static:
            unused.append(("--samples", "int8-static (calibration)"))
        if self.smooth_quant is not None and not (static and t == "openvino"):
            unused.append(("--smooth-quant", "int8-static on openvino"))
        if not self.bias_correction and not (static and t == "openvino" and not qat):
            unused.append(("--no-bias-correction", "post-training int8-static on openvino"))
        for is_set, option in ((self.exclude, "--exclude"), (self.max_drop is not None, "--max-drop")):
            if is_set and s in ("fp16", "bf16"):
                unused.append((option, "the integer schemes (fp16/bf16 convert every layer)"))
            elif is_set and t == "torch":
                unused.append((option, "openvino and onnxruntime (per-layer float fallback)"))
        return unused
