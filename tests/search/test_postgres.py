"""A search spread over two processes (as two machines run it) that share one study in PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.search._postgres import postgres_server

optuna = pytest.importorskip("optuna")


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    with postgres_server() as url:
        yield url


def _cli(out: Path, storage: str, *extra: str) -> list[str]:
    space = out.parent / "grid.json"
    space.write_text(json.dumps({"targets": ["torch", "onnxruntime"], "fuse": [False, True],
                                 "quant_scheme": ["none", "int8-dynamic"]}))
    return [sys.executable, "-m", "slimkit.cli.main", "optimize", "--task", "digits-cnn", "--space", str(space),
            "--sampler", "grid", "--trials", "8", "--threads", "1", "--quick", "--storage", storage,
            "--workers", "1", "--out", str(out), *extra]


def _trials(storage: str) -> list:
    return optuna.load_study(study_name="slimkit", storage=storage).trials


def test_two_processes_share_a_postgres_study_and_survive_a_kill(tmp_path: Path, postgres: str) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    a = subprocess.Popen(_cli(tmp_path / "machine-a", postgres), stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, env=env)
    b = subprocess.Popen(_cli(tmp_path / "machine-b", postgres), stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, env=env)
    # SIGKILL machine a in the middle of one of its trials, once each machine has run one.
    deadline = time.time() + 300
    killed = False
    while time.time() < deadline and a.poll() is None:
        with_pid = [t for t in _trials_or_none(postgres) if "pid" in t.user_attrs]
        mine = [t for t in with_pid if t.user_attrs["pid"] == a.pid]
        others = [t for t in with_pid if t.user_attrs["pid"] == b.pid]
        if others and any(t.state.name == "COMPLETE" for t in mine) and mine[-1].state.name == "RUNNING":
            a.send_signal(signal.SIGKILL)
            killed = True
            break
        time.sleep(0.2)
    a.wait()
    _, err = b.communicate(timeout=300)
    assert b.returncode == 0, err[-2000:]
    # Machine a comes back and resumes: its killed trial is run again, nothing is measured twice.
    resumed = subprocess.run(_cli(tmp_path / "machine-a", postgres, "--resume"), capture_output=True, text=True,
                             timeout=300, env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    done = [t for t in _trials(postgres) if t.state.name == "COMPLETE" and "entry" in t.user_attrs
            and "duplicate_of" not in t.user_attrs]
    points = [tuple(sorted(t.params.items())) for t in done]
    assert len(points) == len(set(points)) == 8, points  # every grid point measured, and once
    assert {t.user_attrs["pid"] for t in done} >= {b.pid}  # both machines measured points
    assert killed, "machine a was never caught in the middle of a trial"
    assert any(t.user_attrs.get("interrupted") for t in _trials(postgres))  # its killed trial, run again
    report = json.loads((tmp_path / "machine-a" / "report.json").read_text())
    assert report["search"]["trials_finished"] == 8
    if report["best"]:
        assert (tmp_path / "machine-a" / "best" / "recipe.yaml").is_file()  # exported, wherever it was measured


def _trials_or_none(storage: str) -> list:
    try:
        return _trials(storage)
    except Exception:  # the study is being created by the first process
        return []
