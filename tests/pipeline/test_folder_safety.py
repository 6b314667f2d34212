"""Run folders are safe: one process per folder, and no command deletes a file it did not write."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

import slimkit
from slimkit.cli.main import main
from slimkit.errors import FolderInUseError
from slimkit.pipeline.lock import held


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 4)).eval()


DATA = [torch.randn(8, 6) for _ in range(3)]


def _holder(folder: Path) -> subprocess.Popen:
    """Another process holding ``folder``'s lock, as a second slimkit run would."""
    code = ("import sys, time; from pathlib import Path; from slimkit.pipeline.lock import lock_run; "
            "lock_run(Path(sys.argv[1])); print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_process_on_the_same_run_folder_is_refused_and_touches_nothing(tmp_path: Path, capsys) -> None:
    out = tmp_path / "b"
    slimkit.benchmark(_model(), DATA, targets=["torch"], out=out, quick=True, threads=1)
    assert not held(out)  # released when the command returned
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != ".slimkit-lock"}
    proc = _holder(out)
    try:
        with pytest.raises(FolderInUseError, match="in use"):
            slimkit.benchmark(_model(), DATA, targets=["torch"], out=out, quick=True, threads=1)
        assert main(["bench", "--task", "digits-cnn", "--targets", "torch", "--quick", "--out", str(out)]) == 2
        said = capsys.readouterr()
        assert f"pid {proc.pid}" in said.out + said.err
    finally:
        proc.kill()
        proc.wait()
    after = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != ".slimkit-lock"}
    assert after == before
    # the holder died (SIGKILL): its lock went with it, and the folder is usable again at once
    slimkit.benchmark(_model(), DATA, targets=["torch"], out=out, quick=True, threads=1)


def test_a_new_folder_claimed_by_another_process_is_not_removed_by_the_refused_one(tmp_path: Path) -> None:
    out = tmp_path / "new" / "run"
    out.mkdir(parents=True)
    proc = _holder(out)
    try:
        with pytest.raises(FolderInUseError):
            slimkit.quantize(_model(), DATA, target="onnxruntime", out=out, quick=True, threads=1)
        assert out.is_dir()
    finally:
        proc.kill()
        proc.wait()


def test_rerunning_keeps_a_users_folder_under_artifacts(tmp_path: Path) -> None:
    out = tmp_path / "b"
    slimkit.benchmark(_model(), DATA, targets=["torch", "onnxruntime"], out=out, quick=True, threads=1)
    mine = out / "artifacts" / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    slimkit.benchmark(_model(), DATA, targets=["torch"], out=out, quick=True, threads=1)
    assert (mine / "notes.txt").read_text() == "mine"
    assert not (out / "artifacts" / "onnxruntime").exists()  # slimkit's own stale folder still goes


def test_the_demo_never_deletes_a_users_file_in_its_folder(tmp_path: Path, capsys) -> None:
    from slimkit.cli.demo import DEMO_SPACE
    from slimkit.search import SearchSpace

    out = tmp_path / "demo"
    out.mkdir()
    space = SearchSpace(**dict(DEMO_SPACE))  # type: ignore[arg-type]
    (out / "search.json").write_text(json.dumps({"sampler": "grid", "space": space.to_dict()}))
    (out / "mine.txt").write_text("mine")
    start = time.time()
    assert main(["demo", "--out", str(out), "--quick"]) == 2
    said = capsys.readouterr()
    assert "did not write: mine.txt" in " ".join((said.out + said.err).split()) and time.time() - start < 30
    assert (out / "mine.txt").read_text() == "mine" and (out / "search.json").exists()
