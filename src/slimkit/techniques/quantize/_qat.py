"""Quantization-aware training: fake quantization with a straight-through estimator.

Every Conv/Linear gets int8 fake quantization of its weight (symmetric, scale from the current
weight) and of its input (asymmetric uint8, per tensor, range from calibration).
``torch.fake_quantize_*`` pass gradients straight through inside the range. The model is
fine-tuned with the shared training engine, then exported as it is: OpenVINO turns the
fake-quantize ops into int8 FakeQuantize (int8 weights on disk, int8 kernels), the ONNX
exporter into QuantizeLinear/DequantizeLinear pairs that ONNX Runtime runs in int8.

Weights are per output channel by default. Per tensor (``per_channel=False``), the scheme the
runtime applies to the deployed, BatchNorm-folded weight is simulated on that same weight:
BatchNorms fed by a Conv are folded into it first (a per-tensor grid on the unfolded weight
would not survive the runtime's folding, which rescales every output channel), and each
layer's weight range is a fraction of its largest weight, picked on the calibration inputs as
the one with the least output error. A folded channel fed by a dead input can carry weights
hundreds of times larger than the rest (MobileNetV2's first depthwise conv is the classic
case); they multiply zeros, so clipping them costs nothing, while a range set by them leaves
every other channel with a handful of int8 levels.

Transformers on OpenVINO also get their attention queries and keys fake-quantized
(``attention``, symmetric int8 like NNCF's), so the attention scores run in int8 too.

Transformers (``smooth``): a few hidden channels of a LayerNorm output carry values ~20x the
rest, so one per-tensor input range leaves the ordinary channels a handful of levels. Each
Linear's input is divided per channel by ``s = max|x|^a / max|W|^(1-a)`` and its weight columns
multiplied by ``s`` (SmoothQuant's migration of the range into the per-channel weights): the
float function is unchanged, the division is one elementwise op in the exported graph.
On the pruned MiniLM of issue 4 (float cosine 0.9707), calibrated fake int8 before training:
0.9653 without, 0.9655 at a=0.5, 0.9694 at 0.75, 0.9697 at 0.85, 0.9675 at 0.95.

Layers reading one tensor (query, key, value) share a divisor, so OpenVINO divides and
quantizes it once: 5.88 ms against 6.26 ms with one divisor per layer (NNCF's int8 of the same
model: 5.79 ms; 2 threads, interleaved).

A task with a transfer set (stored outputs of the original model, e.g. MiniLM's) trains on it
the way distillation does, dropout off and embedding tables fixed: the model learns to match
the original's outputs through the int8 grid. On that pruned MiniLM, 2 epochs at lr 1e-4
(a=0.85): 0.9697 -> 0.9701 through OpenVINO, 0.9702 with shared divisors in the search
benchmark (NNCF's post-training int8: 0.9678).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from slimkit.core.data import Inputs
from slimkit.core.task import Task, run_model
from slimkit.techniques.quantize._origins import in_module
from slimkit.train.engine import TrainConfig, fit
from slimkit.train.losses import distill_loss
from slimkit.train.modes import frozen_embeddings, no_dropout

_WRAPPED = (nn.Conv1d, nn.Conv2d, nn.Linear)
# torch's own attention and transformer layers read their Linears' .weight directly (fused fast
# paths), so a wrapper would break them: their Linears stay float. Hugging Face layers call theirs.
_READS_WEIGHTS = (nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)


# Per-tensor weight ranges tried during calibration: max |w| times 2^(-k/3), down to 1/1024.
RANGE_FRACTIONS = tuple(2.0 ** (-k / 3) for k in range(31))
RANGE_SEARCH_ITEMS = 32  # calibration items the per-tensor range search scores (of the layer's inputs)
SMOOTH_ALPHA = 0.85  # transformers: how much of each input channel's range moves into the weights (see above)


class FakeQuant(nn.Module):
    """A Conv/Linear with int8 fake-quantized input and weight (per channel, or per tensor)."""

    def __init__(self, layer: nn.Module, per_channel: bool = True, weight_max: int = 127) -> None:
        super().__init__()
        self.layer = layer
        self.per_channel = per_channel
        self.weight_max = weight_max  # the largest weight code: 127, or 64 (see int8_dot_saturates)
        self.register_buffer("lo", torch.tensor(float("inf")))
        self.register_buffer("hi", torch.tensor(float("-inf")))
        self.register_buffer("smooth", None)  # per input channel divisor, folded into the weight (Linear)
        if not per_channel:  # the weight range as a fraction of max |w|, and each candidate's output error
            self.register_buffer("range_fraction", torch.tensor(1.0))
            self.register_buffer("range_error", torch.zeros(len(RANGE_FRACTIONS), dtype=torch.float64))
        self.searched = 0
        self.observing = True
        self.frozen: tuple[float, int, torch.Tensor] | None = None
        self.output_frozen: float | None = None
        self.register_buffer("out_lo", None)  # set by quantize_output(): the output's range
        self.register_buffer("out_hi", None)

    def quantize_output(self) -> None:
        """Fake-quantize the output too (per tensor, symmetric int8): an attention query/key feeding a
        matmul, which OpenVINO then runs in int8 (see :func:`insert_fake_quant`)."""
        self.out_lo = torch.tensor(float("inf"))
        self.out_hi = torch.tensor(float("-inf"))

    def _weight_scale(self) -> torch.Tensor:
        """Symmetric int8 scales: one per output channel, or one (0-d) for the whole tensor."""
        w = self.layer.weight.detach()
        if not self.per_channel:
            return (self.range_fraction * w.abs().max() / self.weight_max).clamp(min=1e-8).float()
        return (w.abs().amax(dim=tuple(range(1, w.dim()))) / self.weight_max).clamp(min=1e-8).float()

    def _weight(self) -> torch.Tensor:
        w = self.layer.weight
        scale = self.frozen[2] if self.frozen is not None else self._weight_scale()
        if self.weight_max < 127 and self.frozen is None:
            # Clip to the narrow grid first and keep the fake-quantize op at the int8 range: the
            # exporters then write an ordinary 255-level int8 quantizer whose codes stay within
            # +-weight_max (a 129-level one is not run as int8 by OpenVINO). freeze() clips the
            # stored weight instead, so the exported quantizer reads a plain constant, which
            # OpenVINO stores as int8 (behind a clip op the IR kept fp32 weights: 52.8 MB, not 22).
            w = self._clip(w, scale)
        if not self.per_channel:
            return torch.fake_quantize_per_tensor_affine(w, float(scale), 0, -127, 127)
        zero = torch.zeros_like(scale, dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -127, 127)

    def _clip(self, w: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        bound = scale * self.weight_max
        if self.per_channel:
            bound = bound.view(-1, *[1] * (w.dim() - 1))
        return torch.maximum(torch.minimum(w, bound), -bound)

    def _run(self, x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if isinstance(self.layer, nn.Linear):
            return F.linear(x, w, bias)
        return self.layer._conv_forward(x, w, bias)  # type: ignore[operator]

    def _score_ranges(self, x: torch.Tensor) -> None:
        """Add each candidate per-tensor range's output error on ``x`` (a calibration input).

        One layer call scores every candidate: the weight errors are stacked as extra output
        channels (group by group, so grouped and depthwise convs keep their structure).
        """
        w = self.layer.weight.detach().float()
        top = float(w.abs().max())
        if top == 0.0:
            return
        k, cout = len(RANGE_FRACTIONS), w.shape[0]
        scales = (torch.tensor(RANGE_FRACTIONS) * top / self.weight_max).clamp(min=1e-8).view(-1, *[1] * w.dim())
        delta = (w / scales).round().clamp(-self.weight_max, self.weight_max) * scales - w  # (k, *w.shape)
        groups = getattr(self.layer, "groups", 1)
        stacked = delta.reshape(k, groups, cout // groups, *w.shape[1:]).transpose(0, 1).reshape(k * cout,
                                                                                                 *w.shape[1:])
        out = self._run(x.float(), stacked.to(x.dtype), None).double().pow(2)
        if isinstance(self.layer, nn.Linear):
            err = out.reshape(*out.shape[:-1], k, cout).transpose(-2, 0).reshape(k, -1).sum(1)
        else:
            err = out.reshape(out.shape[0], groups, k, -1).transpose(0, 2).reshape(k, -1).sum(1)
        self.range_error += err
        self.searched += 1

    def pick_range(self) -> None:
        """Per tensor: keep the range with the least output error over the scored calibration inputs."""
        if not self.per_channel and self.searched:
            self.range_fraction.fill_(RANGE_FRACTIONS[int(self.range_error.argmin())])

    def set_smooth(self, divisor: torch.Tensor) -> None:
        """Divide the input per channel by ``divisor`` and multiply the weight's columns by it."""
        with torch.no_grad():
            self.layer.weight.mul_(divisor.to(self.layer.weight.dtype))
        self.smooth = divisor.detach().clone()

    def reset_ranges(self) -> None:
        """Forget what calibration has observed (the input changed, e.g. after smoothing)."""
        self.lo.fill_(float("inf"))
        self.hi.fill_(float("-inf"))
        if self.out_lo is not None:
            self.quantize_output()
        self.searched = 0
        if not self.per_channel:
            self.range_error.zero_()

    @staticmethod
    def _act_params(lo_t: torch.Tensor, hi_t: torch.Tensor) -> tuple[float, int]:
        lo, hi = float(min(lo_t, 0.0)), float(max(hi_t, 0.0))
        scale = max((hi - lo) / 255.0, 1e-8)
        return scale, int(round(-lo / scale))

    def freeze(self) -> None:
        """Fix every quantization parameter as a constant, so exporters see plain fake-quantize ops."""
        self.frozen = (*self._act_params(self.lo, self.hi), self._weight_scale())
        if self.weight_max < 127:
            with torch.no_grad():
                self.layer.weight.copy_(self._clip(self.layer.weight, self.frozen[2]))
        if self.out_lo is not None:
            self.output_frozen = self._output_scale()

    @staticmethod
    def _observe_range(lo: torch.Tensor, hi: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Calibration: the mean of per-batch extremes, like NNCF's default range estimator.
        x = x.detach()
        if lo.isinf():
            return torch.minimum(lo, x.min()), torch.maximum(hi, x.max())
        return 0.9 * lo + 0.1 * x.min(), 0.9 * hi + 0.1 * x.max()

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        if self.observing:
            if not self.per_channel and self.searched < RANGE_SEARCH_ITEMS:
                with torch.no_grad():
                    self._score_ranges(x.detach())
            self.lo, self.hi = self._observe_range(self.lo, self.hi, x)
            return x
        scale, zero = self.frozen[:2] if self.frozen is not None else self._act_params(self.lo, self.hi)
        return torch.fake_quantize_per_tensor_affine(x, scale, zero, 0, 255)

    def _output(self, y: torch.Tensor) -> torch.Tensor:
        if self.out_lo is None or self.out_hi is None:
            return y
        if self.observing:
            self.out_lo, self.out_hi = self._observe_range(self.out_lo, self.out_hi, y)
            return y
        scale = self.output_frozen if self.output_frozen is not None else self._output_scale()
        return torch.fake_quantize_per_tensor_affine(y, scale, 0, -128, 127)

    def _output_scale(self) -> float:
        # Symmetric signed int8 (zero point 0), as NNCF quantizes queries and keys: OpenVINO's
        # int8 attention kernel takes only that; an asymmetric range left it in bf16 with
        # dequantizing converts in front (5.73 ms against 5.05 without any, pruned MiniLM).
        top = max(abs(float(self.out_lo)), abs(float(self.out_hi)))  # type: ignore[arg-type]
        return max(top / 128.0, 1e-8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.smooth is not None:
            x = x / self.smooth
        x = self._input(x)
        w = self._weight() if not self.observing else self.layer.weight
        return self._output(self._run(x, w, self.layer.bias))


def strip_fake_quant(model: nn.Module) -> nn.Module:
    """Unwrap in place: each layer keeps its weight snapped to the int8 grid it was trained on.

    A runtime quantizer then recovers that grid exactly (symmetric max-abs scales, per channel
    or per tensor: a per-tensor range below max |w| leaves the clipped weights at +-weight_max steps).
    """
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, FakeQuant):
                if child.smooth is not None:
                    raise ValueError("a smoothed layer needs its input division: export the fake-quantized model")
                with torch.no_grad():
                    child.layer.weight.copy_(child._weight())
                setattr(module, child_name, child.layer)
    return model


def insert_fake_quant(model: nn.Module, exclude: Sequence[str] = (), per_channel: bool = True,
                      attention: bool = False, weight_max: int = 127) -> list[str]:
    """Wrap every Conv/Linear (except the named ones and those inside named modules) in place;
    returns the wrapped names.

    ``attention``: in every module with ``query``, ``key`` and ``value`` Linears (Hugging Face
    BERT, RoBERTa, ViT self-attention), the query and key outputs are fake-quantized too, so
    the attention scores' matmul reads int8 on both sides, as NNCF's transformer scheme does.
    OpenVINO then runs the attention block (scores, softmax, context) as one int8 kernel
    instead of bf16: 2-3% faster on the pruned MiniLM of issue 4 after QAT (4.48 against
    4.60 ms and 5.14 against 5.26 ms, two interleaved 2-thread runs), at the same cosine
    (0.9702; calibrated, before training, 0.9696 against 0.9697).

    Example:
        >>> att = nn.Module(); att.query, att.key, att.value = (nn.Linear(4, 4) for _ in range(3))
        >>> insert_fake_quant(att, attention=True), att.key.out_lo is not None, att.value.out_lo is None
        (['query', 'key', 'value'], True, True)
    """
    wrapped = []
    for name, module in list(model.named_modules()):
        if isinstance(module, _READS_WEIGHTS):
            continue
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if isinstance(child, _WRAPPED) and not any(in_module(full, e) for e in exclude):
                setattr(module, child_name, FakeQuant(child, per_channel, weight_max))
                wrapped.append(full)
        if attention and all(isinstance(getattr(module, n, None), FakeQuant) for n in ("query", "key", "value")):
            module.query.quantize_output()
            module.key.quantize_output()
    return wrapped


_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def fold_batchnorms(model: nn.Module, example_inputs: Inputs) -> list[str]:
    """Fold (in place, eval statistics) each BatchNorm whose input is a Conv's output; returns their names.

    The pairs are found by running ``example_inputs`` (a BatchNorm fed the very tensor a Conv
    returned, each called once), the folded BatchNorms become ``nn.Identity``, and the folded
    model must match the original on ``example_inputs`` (cosine >= 0.99999, largest difference
    <= 1e-3 of the largest output), else nothing is folded. The fuse technique does the general
    job with traced data flow; techniques do not import each other.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU()).eval()
        >>> fold_batchnorms(net, {"input": torch.randn(1, 1, 5, 5)}), type(net[1]).__name__
        (['1'], 'Identity')
    """
    from collections import Counter

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    from slimkit.export.parity import compare

    convs = {n: m for n, m in model.named_modules() if type(m) in _CONVS}
    bns = {n: m for n, m in model.named_modules()
           if type(m) in _BATCHNORMS and m.track_running_stats and m.running_mean is not None}
    produced: dict[int, str] = {}
    keep: list[torch.Tensor] = []  # outputs stay alive during the run, so their ids stay unique
    calls: Counter[str] = Counter()
    pairs: dict[str, str] = {}

    def on_conv(name: str):  # type: ignore[no-untyped-def]
        def hook(_m: nn.Module, _args: object, out: torch.Tensor) -> None:
            calls[name] += 1
            produced[id(out)] = name
            keep.append(out)
        return hook

    def on_bn(name: str):  # type: ignore[no-untyped-def]
        def hook(_m: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            calls[name] += 1
            if args and id(args[0]) in produced:
                pairs[name] = produced[id(args[0])]
        return hook

    handles = [m.register_forward_hook(on_conv(n)) for n, m in convs.items()]
    handles += [m.register_forward_pre_hook(on_bn(n)) for n, m in bns.items()]
    try:
        with torch.no_grad():
            reference = run_model(model, example_inputs)
    finally:
        for h in handles:
            h.remove()
    used = Counter(pairs.values())
    pairs = {bn: conv for bn, conv in pairs.items() if calls[bn] == 1 and calls[conv] == 1 and used[conv] == 1}
    if not pairs:
        return []
    saved = {conv: (convs[conv].weight, convs[conv].bias) for conv in pairs.values()}
    for bn_name, conv_name in pairs.items():
        conv = convs[conv_name]
        fused = fuse_conv_bn_eval(conv, bns[bn_name])
        conv.weight, conv.bias = fused.weight, fused.bias
        _replace(model, bn_name, nn.Identity())
    with torch.no_grad():
        folded = run_model(model, example_inputs)
    parity = compare(reference, folded)
    if parity.cosine < 0.99999 or parity.max_abs_diff > 1e-3 * parity.reference_scale:
        # A pairing the run could not see through (the Conv output used elsewhere too): undo.
        for bn_name, conv_name in pairs.items():
            convs[conv_name].weight, convs[conv_name].bias = saved[conv_name]
            _replace(model, bn_name, bns[bn_name])
        return []
    return sorted(pairs)


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def smooth_inputs(model: nn.Module, items: Sequence[Inputs], alpha: float = SMOOTH_ALPHA) -> int:
    """Migrate input range into the weights of every fake-quantized Linear (see the module
    docstring); returns how many layers were smoothed. ``model`` is still observing.

    Example:
        >>> _ = torch.manual_seed(0); net = nn.Sequential(nn.Linear(4, 3)).eval()
        >>> x = torch.randn(8, 4); x[:, 0] *= 30  # one outlier channel
        >>> before = net(x); _ = insert_fake_quant(net)
        >>> smooth_inputs(net, [{"input": x}]), torch.allclose(net(x), before, atol=1e-4)
        (1, True)
    """
    layers = {n: m for n, m in model.named_modules() if isinstance(m, FakeQuant) and isinstance(m.layer, nn.Linear)}
    peak: dict[str, torch.Tensor] = {}
    readers: dict[int, list[str]] = {}  # id of an input tensor (first item) -> the layers that read it
    alive: list[torch.Tensor] = []  # inputs stay referenced during that run, so their ids stay unique
    calls: dict[str, int] = {}

    def record(name: str):  # type: ignore[no-untyped-def]
        def hook(_m: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            if not args:
                return
            x = args[0].detach()
            if first:
                readers.setdefault(id(args[0]), []).append(name)
                alive.append(args[0])
                calls[name] = calls.get(name, 0) + 1
            a = x.abs().reshape(-1, x.shape[-1]).amax(0).float()
            peak[name] = torch.maximum(peak[name], a) if name in peak else a
        return hook

    handles = [m.register_forward_pre_hook(record(n)) for n, m in layers.items()]
    try:
        with torch.no_grad():
            for i, item in enumerate(items):
                first = i == 0
                run_model(model, item)
                alive.clear()
    finally:
        for h in handles:
            h.remove()
    # Layers that read one tensor (a transformer's query, key and value) share one divisor, sized
    # by their largest weights, so the exported graph divides and quantizes that tensor once
    # (OpenVINO merges the identical ops) instead of once per reader.
    # A layer called more than once (a shared weight) would need two divisors: left as it is.
    groups = [[n for n in g if calls[n] == 1] for g in readers.values()]
    groups = [g for g in groups if g]
    for group in groups:
        w = torch.stack([layers[n].layer.weight.detach().abs().amax(0).float() for n in group]).amax(0)
        x = torch.stack([peak[n] for n in group]).amax(0)
        # A floor on s: a near-silent channel is not blown up into the weight's range.
        divisor = (x.clamp(min=1e-5) ** alpha / w.clamp(min=1e-5) ** (1 - alpha)).clamp(min=1e-2)
        for n in group:
            layers[n].set_smooth(divisor)
    for m in layers.values():
        m.reset_ranges()
    return sum(len(g) for g in groups)


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
    history: list[float] = []
    transfer = task.transfer_data is not None
    if epochs:
        cfg = TrainConfig(epochs=epochs, lr=lr, seed=seed)

        def on_epoch(epoch: int, row: dict[str, float]) -> None:
            if progress is not None:
                progress(f"  QAT epoch {epoch}/{epochs}: loss {row.get('loss', float('nan')):.4f}")

        if transfer:
            with no_dropout(model), frozen_embeddings(model):
                result = fit(model, task.transfer(), distill_loss(task), cfg, on_epoch=on_epoch)
        else:
            result = fit(model, task.train_data, task.loss, cfg, on_epoch=on_epoch)
        history = [round(h.get("loss", float("nan")), 5) for h in result.history]
    model.eval()
    fq = [m for m in model.modules() if isinstance(m, FakeQuant)]
    for m in fq:
        m.freeze()
    info: dict[str, object] = {"layers": len(wrapped), "epochs": epochs, "lr": lr, "loss_history": history,
                               "weights": "per-channel" if per_channel else "per-tensor",
                               "weight_max": weight_max,
                               "data": "transfer set (original model's outputs)" if transfer else "training set",
                               "smooth_alpha": smooth, "smoothed_layers": smoothed,
                               "int8_attention_inputs": sum(1 for m in fq if m.out_lo is not None)}
    if not per_channel:
        info["folded_batchnorms"] = len(folded)
        info["clipped_ranges"] = sum(1 for m in fq if float(m.range_fraction) < 1.0)
    return model, info
