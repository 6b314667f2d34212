"""fit_task and the CLI: run folder contents, recorded precision, resume."""

from __future__ import annotations

import json
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from slimkit.api.train import fit_task
from slimkit.cli.main import main
from slimkit.errors import UsageError
from tests.conftest import make_tiny_task


def test_fit_task_writes_metrics_precision_and_resumes(tmp_path) -> None:
    task = make_tiny_task("mlp")
    r = fit_task(task, out=tmp_path, epochs=2, lr=0.05, precision="fp32")
    assert json.loads((tmp_path / "precision.json").read_text())["precision"] == "fp32"
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2] and "accuracy" in rows[0]
    assert (tmp_path / "model.safetensors").exists() and (tmp_path / "checkpoints" / "latest.json").exists()
    again = fit_task(make_tiny_task("mlp"), out=tmp_path, epochs=3, lr=0.05, precision="fp32", resume=True)
    assert again.resumed_from == 2 and len(again.history) == 3 and again.history[:2] == r.history
    info = json.loads((tmp_path / "train.json").read_text())
    assert info["precision"] == "fp32" and info["resumed_from_epoch"] == 2
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 3
    assert info["notes"] and "learning-rate schedule" in info["notes"][0]  # 2 epochs planned, 3 run
    # A plain --resume takes the epochs last asked for (it took 10, and trained 7 more).
    assert len(fit_task(make_tiny_task("mlp"), out=tmp_path, resume=True).history) == 3
    with pytest.raises(UsageError, match="--epochs 2 is fewer than the 3 epoch"):  # stored 2, noted a bogus lr
        fit_task(make_tiny_task("mlp"), out=tmp_path, epochs=2, resume=True)
    with pytest.raises(UsageError, match="nothing to resume"):  # never a silent fresh start
        fit_task(make_tiny_task("mlp"), out=tmp_path / "empty", epochs=1, resume=True)
    assert not (tmp_path / "empty").exists()
    # A resumed run keeps its settings: a different one was ignored while train.json recorded it.
    with pytest.raises(UsageError, match="lr 0.5 \\(stored: 0.05\\); precision 'bf16'"):
        fit_task(make_tiny_task("mlp"), out=tmp_path, epochs=4, lr=0.5, precision="bf16", resume=True)
    with pytest.raises(UsageError, match="holds a training run of task tiny-mlp, not tiny-cnn"):  # dumped weight names
        fit_task(make_tiny_task("cnn"), out=tmp_path, resume=True)
    with pytest.raises(UsageError, match="already holds a training run"):  # overwrote metrics and model
        fit_task(make_tiny_task("mlp"), out=tmp_path, epochs=1)
    assert (tmp_path / "model.safetensors").stat().st_mode & 0o044  # readable like the run's other files


def test_bad_training_runs_are_clear_errors(tmp_path) -> None:
    from slimkit.errors import TrainingError

    with pytest.raises(UsageError, match="smaller than the 2 processes"):  # trained zero steps before
        fit_task("digits-cnn", out=tmp_path / "a", epochs=1, batch_size=1, nproc=2)
    with pytest.raises(UsageError, match="finite number > 0"):
        fit_task(make_tiny_task("mlp"), out=tmp_path / "b", epochs=1, lr=float("nan"))
    with pytest.raises(TrainingError, match="in epoch 1: training diverged"):  # a FloatingPointError traceback
        fit_task(make_tiny_task("mlp"), out=tmp_path / "c", epochs=1, lr=1e30, precision="fp32")


@pytest.mark.slow
def test_cli_train_and_distill(tmp_path, capsys) -> None:
    assert main(["train", "--task", "digits-cnn", "--epochs", "1", "--scratch", "--precision", "auto",
                 "--out", str(tmp_path / "t")]) == 0
    assert json.loads((tmp_path / "t" / "precision.json").read_text())["precision"] in ("fp32", "bf16")
    assert main(["distill", "--task", "digits-cnn", "--student", "digits-cnn", "--epochs", "1", "--quick",
                 "--label-fraction", "0.2", "--out", str(tmp_path / "d")]) == 0
    report = json.loads((tmp_path / "d" / "report.json").read_text())
    assert [c["id"] for c in report["candidates"]] == ["distilled", "alone"]


def test_metrics_go_to_tensorboard_when_installed(tmp_path, monkeypatch) -> None:
    import sys
    import types

    scalars = []

    class Writer:
        def __init__(self, logdir: str) -> None:
            self.logdir = logdir

        def add_scalar(self, tag: str, value: float, step: int) -> None:
            scalars.append((tag, step))

        def flush(self) -> None:
            pass

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=Writer))
    fit_task(make_tiny_task("mlp"), out=tmp_path, epochs=2, lr=0.05, precision="fp32")
    assert ("train/loss", 2) in scalars and ("train/accuracy", 1) in scalars


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in pathlib.Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and text in (proc / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


@pytest.mark.skipif(not pathlib.Path("/proc").is_dir(), reason="reads /proc to find the workers")
def test_stopping_a_data_parallel_run_stops_its_workers(tmp_path) -> None:
    """SIGTERM to `slimkit train --nproc 2` ended the command while torchrun and both workers trained on."""
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "slimkit.cli.main", "train", "--task", "digits-cnn", "--epochs", "50", "--scratch",
           "--precision", "fp32", "--batch-size", "2", "--nproc", "2", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while len(_processes_mentioning(str(out))) < 4 and time.time() < deadline:  # cli, torchrun, 2 workers
        time.sleep(0.5)
    assert len(_processes_mentioning(str(out))) >= 4, "the workers never started"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    time.sleep(1)
    assert _processes_mentioning(str(out)) == []
    assert b"Traceback" not in proc.stderr.read()


def test_a_data_parallel_run_trains_in_the_folder_its_launcher_holds(tmp_path) -> None:
    """torchrun's workers write into the run folder the launcher claimed and locked (they were refused
    as a second run there)."""
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "slimkit.cli.main", "train", "--task", "digits-cnn", "--epochs", "1", "--scratch",
           "--precision", "fp32", "--nproc", "2", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / "model.safetensors").is_file() and "in use" not in done.stderr


def test_until_stops_at_the_metric_and_records_the_time_to_it(tmp_path) -> None:
    import json

    from slimkit.api.train import fit_task

    r = fit_task("digits-cnn", out=tmp_path / "a", epochs=30, precision="fp32", scratch=True, until=90.0,
                 price_per_core_hour=0.05)
    u = json.loads((tmp_path / "a" / "train.json").read_text())["until"]
    assert u["reached"] and u["epochs"] == len(r.history) < 30 and r.history[-1]["accuracy"] >= 90.0
    assert u["time_to_metric_s"] > 0 and u["samples"] == u["epochs"] * 1437 and u["cost"] > 0
    never = fit_task("digits-cnn", out=tmp_path / "b", epochs=1, precision="fp32", scratch=True, until=101.0)
    assert never.reached is None
    assert json.loads((tmp_path / "b" / "train.json").read_text())["until"]["reached"] is False
    with pytest.raises(UsageError, match="until"):
        fit_task("digits-cnn", out=tmp_path / "c", until=float("nan"))


def test_two_nodes_on_loopback_match_one_process(tmp_path) -> None:
    """`--nnodes 2` through torchrun's c10d rendezvous, two launchers on this machine standing in for two
    machines: the metric matches one process's within 0.1 point at the same global batch."""
    import json
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    task = f"{pathlib.Path(__file__).parent / '_mlp_task.py'}:task"
    base = [sys.executable, "-m", "slimkit.cli.main", "train", "--task", task, "--epochs", "3", "--precision",
            "fp32", "--batch-size", "64", "--quiet"]
    nodes = [subprocess.Popen([*base, "--nnodes", "2", "--node-rank", str(r), "--rdzv-endpoint", f"127.0.0.1:{port}",
                               "--out", str(tmp_path / f"node{r}")], stderr=subprocess.PIPE, text=True)
             for r in (0, 1)]
    errors = [p.communicate(timeout=300)[1] for p in nodes]
    assert [p.returncode for p in nodes] == [0, 0], errors
    one = subprocess.run([*base, "--threads", "1", "--out", str(tmp_path / "one")], capture_output=True, text=True,
                         timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    written = [json.loads(p.read_text()) for p in tmp_path.glob("node*/train.json")]
    assert len(written) == 1 and written[0]["processes"] == 2  # rank 0's node wrote the run
    alone = json.loads((tmp_path / "one" / "train.json").read_text())
    assert abs(written[0]["metric"]["value"] - alone["metric"]["value"]) <= 0.1
