"""Checkpoints: no pickle, atomic, and a round trip restores optimizer and RNG state exactly."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from slimkit.errors import SlimkitError
from slimkit.train import checkpoint as ckpt


def test_round_trip_without_pickle(tmp_path) -> None:
    model = nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    gen = torch.Generator().manual_seed(5)
    state = {"optimizer": opt.state_dict(), "rng": ckpt.rng_state(gen), "history": [{"loss": float("nan")}]}
    for epoch in (1, 2, 3):
        ckpt.save(tmp_path, epoch, model, state)
    latest = ckpt.latest(tmp_path)
    assert latest is not None and latest.name == "epoch-0003"
    assert sorted(p.name for p in tmp_path.glob("epoch-*")) == ["epoch-0002", "epoch-0003"]
    assert {p.suffix for p in latest.iterdir()} == {".safetensors", ".json"}
    json.loads((latest / "state.json").read_text())  # plain JSON
    other = nn.Linear(3, 2)
    back = ckpt.load(latest, other)
    assert torch.equal(other.weight, model.weight)
    opt2 = torch.optim.AdamW(other.parameters(), lr=0.1)
    opt2.load_state_dict(back["optimizer"])
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    g2 = torch.Generator()
    ckpt.set_rng_state(back["rng"], g2)
    assert torch.equal(torch.rand(3, generator=g2), torch.rand(3, generator=gen))


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch) -> None:
    model = nn.Linear(2, 2)
    ckpt.save(tmp_path, 1, model, {"x": 1})

    def boom(*a, **k):  # noqa: ANN002, ANN003
        raise OSError("disk full")

    import safetensors.torch

    monkeypatch.setattr(safetensors.torch, "save_file", boom)
    with pytest.raises(OSError):
        ckpt.save(tmp_path, 2, model, {"x": 2})
    assert ckpt.latest(tmp_path).name == "epoch-0001"
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


@pytest.mark.parametrize("damage", ["pointer-garbage", "pointer-outside", "pointer-list", "truncated-weights",
                                    "truncated-state", "state-json-garbage", "state-json-list", "state-mismatch"])
def test_a_damaged_checkpoint_falls_back_or_is_named(tmp_path, damage: str) -> None:
    model = nn.Linear(3, 2)
    for epoch in (1, 2):
        ckpt.save(tmp_path, epoch, model, {"step": epoch, "t": torch.ones(2)})
    last = tmp_path / "epoch-0002"
    pointer = tmp_path / "latest.json"
    if damage.startswith("pointer"):
        pointer.write_text({"pointer-garbage": "{not json", "pointer-outside": '{"path": "../../etc"}',
                            "pointer-list": "[1, 2]"}[damage])
        assert ckpt.latest(tmp_path) == last  # the newest complete epoch folder instead
        assert ckpt.load(last, nn.Linear(3, 2))["step"] == 2
        return
    target = {"truncated-weights": last / "model.safetensors", "truncated-state": last / "state.safetensors"}.get(
        damage, last / "state.json")
    if damage.startswith("truncated"):
        target.write_bytes(target.read_bytes()[:40])
    elif damage == "state-json-garbage":
        target.write_text("{")
    elif damage == "state-json-list":
        target.write_text("[]")
    else:
        raw = json.loads(target.read_text())
        raw["state"] = {"__tensor__": "missing"} if isinstance(raw["state"], dict) else raw["state"]
        target.write_text(json.dumps(raw))
    with pytest.raises(SlimkitError) as err:
        ckpt.load(ckpt.latest(tmp_path), nn.Linear(3, 2))
    assert "epoch-0002" in str(err.value) and err.value.hint
