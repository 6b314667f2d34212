"""Every script in examples/ runs, on tiny data, as a user would run it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _run(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(EXAMPLES / script), "--quick", *args], capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_a_plain_module_with_a_dataloader(tmp_path: Path) -> None:
    out = _run("plain_module.py", "--out", str(tmp_path), "--epochs", "8")
    assert "pruned:" in out and "quantized:" in out
    predicted, true = out.split("predicted: ")[1].split(" true: ")
    agree = sum(a == b for a, b in zip(eval(predicted), eval(true), strict=True))  # noqa: S307 - our own output
    assert agree >= 6


def test_a_torchvision_cnn_trained_on_an_image_folder(tmp_path: Path) -> None:
    out = _run("torchvision_imagefolder.py", "--out", str(tmp_path), "--per-class", "12", "--epochs", "2")
    assert "openvino-int8-static" in out and "images of class 3" in out
    assert (tmp_path / "quantize" / "artifacts" / "openvino-int8-static" / "manifest.json").is_file()


def test_a_hugging_face_classifier_from_a_folder_with_a_csv(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    out = _run("hf_text_classifier.py", "--out", str(tmp_path), "--steps", "30")
    assert "openvino-int8-static" in out
    assert "math  <- Return the square root of x." in out  # the raw text served through the saved tokenizer
