"""Shared fixtures: tiny models of each family, isolated cache, fast tasks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from slimkit.core.data import Batches
from slimkit.core.task import Metric, Task, accuracy


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    # Keep tests from reading or writing the user's real cache, but share one cache across
    # the session so the digits baseline trains once.
    import os

    os.environ.setdefault("SLIMKIT_CACHE", str(tmp_path_factory.mktemp("cache")))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)


class TinyCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))


class TinyMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


class TinyEncoder(nn.Module):
    """A transformer called with keyword inputs, like a Hugging Face model."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 16)
        layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.head = nn.Linear(16, 3)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        h = self.encoder(self.embed(input_ids))
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        return self.head((h * m).sum(1) / m.sum(1).clamp(min=1.0))


class TinyBert(nn.Module):
    """A tiny Hugging Face BertModel (hidden 32, 2 layers, 4 heads) from a config: no download."""

    def __init__(self) -> None:
        super().__init__()
        from transformers import BertConfig, BertModel

        from slimkit.tasks.minilm import SentenceEncoder

        cfg = BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=64, max_position_embeddings=32, attn_implementation="eager")
        self.encoder = SentenceEncoder(BertModel(cfg, add_pooling_layer=False))  # masked mean pooling
        self.head = nn.Linear(32, 3)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(input_ids, attention_mask, token_type_ids))


def _task(name: str, model: nn.Module, inputs: dict[str, torch.Tensor], n_classes: int = 3) -> Task:
    torch.manual_seed(0)
    n = next(iter(inputs.values())).shape[0]
    targets = torch.randint(0, n_classes, (n,))
    data = Batches(inputs, targets, batch_size=8)
    model.eval()
    return Task(name, model, {k: v[:1] for k, v in inputs.items()}, data, data, data,
                Metric("accuracy", accuracy), nn.functional.cross_entropy, throughput_batch=4)


def make_tiny_task(family: str) -> Task:
    torch.manual_seed(0)
    if family == "cnn":
        return _task("tiny-cnn", TinyCNN(), {"x": torch.randn(20, 1, 8, 8)})
    if family == "mlp":
        return _task("tiny-mlp", TinyMLP(), {"features": torch.randn(20, 6)})
    if family == "transformer":
        ids = torch.randint(1, 50, (20, 12))
        mask = torch.ones(20, 12, dtype=torch.long)
        mask[::3, 8:] = 0
        return _task("tiny-transformer", TinyEncoder(), {"input_ids": ids, "attention_mask": mask})
    if family == "bert":  # not in FAMILIES: Hugging Face layouts only where a test needs one
        ids = torch.randint(1, 60, (20, 10))
        mask = torch.ones_like(ids)
        mask[::3, 7:] = 0
        return _task("tiny-bert", TinyBert(), {"input_ids": ids, "attention_mask": mask,
                                               "token_type_ids": torch.zeros_like(ids)})
    raise ValueError(family)


FAMILIES = ["cnn", "mlp", "transformer"]


@pytest.fixture(params=FAMILIES)
def tiny_task(request: pytest.FixtureRequest) -> Task:
    return make_tiny_task(request.param)
