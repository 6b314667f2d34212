"""Token-sparse activation outliers: the layers static int8 cannot serve, found from calibration data.

Transformers (BERT and its family) put a few *tokens* (delimiters, punctuation) at values tens
of times larger than the rest in many channels of some layer inputs; in MiniLM, the input of
every FFN output projection (the GELU output). A static int8 activation has one range per
tensor, so those tokens either stretch it (everything else gets a handful of levels) or get
clipped. SmoothQuant cannot help: its per-channel scale is the same for every token, so it
moves the spike into the weights, which then lose precision for every token. Such layers are
given int8 weights only (weight-only compression) and no static activation quantizer: the file
stays as small as full int8, and OpenVINO's CPU plugin quantizes the activations of an
int8-weight matmul *dynamically*, per token in groups of channels (the IR asks for 64), so a
spike costs only its own token's group. The file stays int8-sized and the model runs a little
slower than all-static int8, far faster than with those matmuls in float (BENCHMARKS.md).

The statistic, per layer input: for each channel, the ratio of its largest ``|x|`` over all
calibration tokens to its 99th percentile (:data:`TAIL`); the layer's score is the 90th
percentile of that ratio over channels (:data:`CHANNEL_QUANTILE`). A smooth channel has a
small ratio even when heavy-tailed (Gaussian about 1.5, Laplace about 2-2.5 over a few thousand
tokens), and a channel that is large for *every* token (LayerNorm outputs) too: SmoothQuant
handles those. A ratio far above that means spikes on under 1% of the tokens. On MiniLM the
six FFN output inputs score 6.2-14.7 and every other layer input 2.0-3.4 (64 calibration
sentences; 5.2-10.7 against 1.8-3.1 with 16), hence :data:`THRESHOLD` 4.5 in the gap.
Lower reference quantiles separate worse there (p95: 10.4 against 8.0), so the statistic looks
for spikes on under 1% of the calibration tokens; spikes on more (say every [SEP] of very short
padded sequences) put the reference inside them and go unflagged: the accuracy-aware mode
(``max_drop``) is the fallback for those.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from slimkit._optional import require
from slimkit.core.data import Inputs

TAIL = 0.01  # a channel's reference level: the value 1% of the tokens exceed
CHANNEL_QUANTILE = 0.9  # a layer scores high when at least 10% of its channels spike
THRESHOLD = 4.5  # see the module docstring: MiniLM's outlier layers score >= 6.2, the rest <= 3.4
MAX_ITEMS = 64  # calibration items scored: 8192 tokens at MiniLM's length, a few seconds


class ChannelTails:
    """Per-channel maximum and upper tail of ``|x|`` over tokens, fed one activation at a time.

    Keeps only the ``keep`` largest values per channel (enough for the :data:`TAIL` quantile of
    ``expected_tokens`` tokens), so memory does not grow with the calibration set.
    """

    def __init__(self, expected_tokens: int) -> None:
        self.keep = math.floor(TAIL * expected_tokens) + 1
        self.tokens = 0
        self.top: np.ndarray | None = None  # (<= keep, channels)

    def add(self, x: np.ndarray) -> None:
        """``x``: any shape with channels last (tokens are every other axis)."""
        a = np.abs(np.asarray(x, dtype=np.float32).reshape(-1, x.shape[-1]))
        self.tokens += a.shape[0]
        buf = a if self.top is None else np.concatenate([self.top, a])
        if buf.shape[0] > self.keep:
            buf = np.partition(buf, buf.shape[0] - self.keep, axis=0)[-self.keep:]
        self.top = buf

    def score(self) -> float:
        """:data:`CHANNEL_QUANTILE` over channels of (channel max / channel :data:`TAIL` quantile)."""
        if self.top is None:
            return 0.0
        top = np.sort(self.top, axis=0)[::-1]
        # The value floor(TAIL * tokens) others exceed; if more tokens came than announced, the
        # smallest kept value stands in (larger, so the score errs low: fewer layers flagged).
        k = min(math.floor(TAIL * self.tokens), top.shape[0] - 1)
        peak, tail = top[0], top[k]
        ratio = peak / np.maximum(tail, 1e-6 * max(float(peak.max()), 1e-30))
        return float(np.quantile(ratio, CHANNEL_QUANTILE))


def outlier_score(activations: Sequence[np.ndarray]) -> float:
    """The token-outlier score of one layer input seen as ``activations`` (channels last).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> smooth = [rng.normal(size=(128, 64)) for _ in range(8)]
        >>> round(outlier_score(smooth), 1) < THRESHOLD
        True
        >>> spiky = [a.copy() for a in smooth]
        >>> for a in spiky:
        ...     a[0] *= 40  # the first token of every item is 40x larger in every channel
        >>> outlier_score(spiky) > THRESHOLD
        True
    """
    tails = ChannelTails(sum(a.size // a.shape[-1] for a in activations))
    for a in activations:
        tails.add(a)
    return tails.score()


def flag_outlier_layers(scores: dict[str, float], threshold: float = THRESHOLD) -> list[str]:
    """The layers whose score is above ``threshold``, in the order of ``scores``."""
    return [name for name, s in scores.items() if s > threshold]


def matmul_input_scores(xml: Path, calibration: Iterable[Inputs], max_items: int = MAX_ITEMS) -> dict[str, float]:
    """Token-outlier score of the activation input of every weighted MatMul of a float IR.

    Runs up to ``max_items`` calibration items through the float model with each such input
    added as an output; MatMuls that share an input (query, key, value) share its score.
    """
    ov = require("openvino", "outlier detection on OpenVINO IR")
    from slimkit.techniques.quantize._ov_nodes import _is_constant

    core = ov.Core()
    model = core.read_model(str(xml))
    layers: list[tuple[str, tuple[str, int]]] = []  # (MatMul, the output feeding it), in graph order
    outputs, added = [], set()
    for op in model.get_ordered_ops():
        if op.get_type_name() != "MatMul" or op.get_attributes().get("transpose_a"):
            continue
        act, weight = op.input_value(0), op.input_value(1)
        if not _is_constant(weight.get_node()) or _is_constant(act.get_node()):
            continue
        key = (act.get_node().get_friendly_name(), act.get_index())
        if key not in added:
            added.add(key)
            outputs.append(act)
        layers.append((op.get_friendly_name(), key))
    if not layers:
        return {}
    model.add_outputs(outputs)
    index = {(r.input_value(0).get_node().get_friendly_name(), r.input_value(0).get_index()): i
             for i, r in enumerate(model.get_results())}
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    items = list(calibration)[:max_items]
    tails: dict[tuple[str, int], ChannelTails] = {}
    for item in items:
        result = compiled({k: v.numpy() for k, v in item.items()})
        for key in added:
            x = result[compiled.outputs[index[key]]]
            if key not in tails:  # every item assumed the first one's size (see ChannelTails.score)
                tails[key] = ChannelTails((x.size // x.shape[-1]) * len(items))
            tails[key].add(x)
    return {name: round(tails[key].score(), 3) for name, key in layers}
