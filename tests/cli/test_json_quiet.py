"""--json: one JSON document on stdout holding the best's paired speed-up; --quiet: no progress lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slimkit.cli.main import main

Q = ["--quick", "--threads", "1"]


@pytest.mark.parametrize("argv", [
    ["bench", "--task", "digits-cnn", "--targets", "onnxruntime", *Q],
    ["quantize", "--task", "digits-cnn", "--target", "onnxruntime", "--scheme", "int8-dynamic", *Q],
    ["prune", "--task", "digits-cnn", "--structured", "--ratio", "0.3", "--recover-epochs", "0", "--targets",
     "onnxruntime", *Q],
    ["train", "--task", "digits-cnn", "--epochs", "1", "--precision", "fp32"],
    ["list"],
], ids=lambda a: a[0])
def test_json_prints_one_document_and_quiet_prints_no_progress(tmp_path: Path, capsys, argv: list[str]) -> None:
    argv = [*argv, "--json", "--quiet"] + (["--out", str(tmp_path / "o")] if argv[0] != "list" else [])
    assert main(argv) == 0
    said = capsys.readouterr()
    doc = json.loads(said.out)  # stdout is the document and nothing else
    assert said.err.strip() == "" or "warning" in said.err.lower()
    if argv[0] in ("bench", "quantize", "prune"):
        assert doc["report"]["json"].endswith("report.json") and doc["baseline"]["speedup"] == 1.0
        for c in doc["candidates"]:
            assert c["paired"] and c["speedup_ci95"][0] <= c["speedup"] <= c["speedup_ci95"][1]
        if doc["best"] is not None:
            assert doc["best"]["paired"] and doc["best"]["speedup"] > 1.0
    elif argv[0] == "train":
        assert doc["epochs"] == 1 and doc["model"].endswith("model.safetensors")
    else:
        assert "digits-cnn" in doc["tasks"] and "onnxruntime" in doc["targets"]


def test_errors_are_said_under_quiet_and_json(tmp_path: Path, capsys) -> None:
    assert main(["bench", "--task", "nosuch", "--json", "--quiet", "--out", str(tmp_path / "o")]) == 2
    said = capsys.readouterr()
    assert "nosuch" in said.err and said.out == ""
