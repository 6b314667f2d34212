"""The CLI as a user runs it: exit codes, no tracebacks, files written."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from slimkit.cli.main import main
from slimkit.errors import UsageError


def test_list_shows_tasks_techniques_targets(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("digits-cnn", "digits-resnet18", "digits-mobilenet", "minilm", "fuse", "onnxruntime", "openvino",
                 "tensorrt"):
        assert name in out


def test_env_json(capsys):
    assert main(["env", "--json"]) == 0
    env = json.loads(capsys.readouterr().out)
    assert env["versions"]["torch"] and "flags" in env["cpu"]
    assert isinstance(env["cpu"]["int8_dot_saturates"], bool)
    assert main(["env"]) == 0
    assert "int8 kernels" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bench", "--task", "nope", "--out", "x"], "unknown task 'nope'"),
        (["bench", "--task", "digits-cnn", "--targets", "torch,foo", "--out", "x"], "unknown target 'foo'"),
        (["bench", "--task", "digits-cnn", "--threads", "0", "--out", "x"], "must be >= 1"),
        (["bench", "--task", "missing.py:make", "--out", "x"], "task file not found"),
        (["bench", "--task", "digits-cnn"], "--out"),
        (["frobnicate"], "invalid choice"),
        (["train", "--task", "digits-cnn", "--accumulate", "2", "--out", "x"], "slimkit train --help"),
    ],
)
def test_usage_errors_exit_2_with_hint(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "hint:" in err
    assert "Traceback" not in err


OPT = ["optimize", "--task", "digits-cnn", "--out", "run"]


@pytest.mark.parametrize(
    ("argv", "files", "message"),
    [
        ([*OPT, "--size-budget", "0"], {}, "--size-budget must be a number > 0"),  # was: no budget at all
        ([*OPT, "--time-budget", "-1"], {}, "--time-budget must be a number > 0"),
        ([*OPT, "--max-drop", "nan"], {}, "--max-drop must be a number >= 0"),
        ([*OPT, "--latency-budget", "-5"], {}, "--latency-budget must be a number > 0"),
        ([*OPT, "--targets", ","], {}, "no targets given"),  # was: the default targets
        ([*OPT, "--storage", "bogus://x"], {}, "cannot open the study storage"),
        ([*OPT, "--space", "s.yaml"], {"s.yaml": "targets: []\n"}, "needs at least one target"),
        ([*OPT, "--space", "s.yaml"], {"s.yaml": "prune_ratio: [-0.5]\n"}, "must be numbers in [0, 1)"),
        ([*OPT, "--space", "s.yaml"], {"s.yaml": b"\xff\xfe\x00"}, "is not text"),
        # every trial failed, then "best: none" with exit 0
        ([*OPT, "--space", "s.yaml"], {"s.yaml": "targets: [onnxruntime]\nquant_scheme: [int4-weight-only]\n"},
         "runs on none of its targets"),
        ([*OPT, "--space", "s.yaml"],
         {"s.yaml": "targets: [openvino]\nquant_scheme: [int8-static]\ncalibration: [entropy]\n"},
         "calibration entropy is offered on none of its targets"),
        (["tune", "--task", "digits-cnn", "--space", "s.yaml", "--out", "run"],
         {"s.yaml": "lr: {low: 0.1, high: 0.01}\n"}, "low 0.1 is above high 0.01"),
        (["tune", "--task", "digits-cnn", "--space", "s.yaml", "--out", "run"],
         {"s.yaml": "epochs: {low: -3, high: -1}\n"}, "-3 trains nothing"),
        # each was an Optuna or engine traceback, or a trial failing after others had finished
        (["tune", "--task", "digits-cnn", "--space", "s.yaml", "--out", "run"],
         {"s.yaml": "lr: {low: 1e-3, high: 1e-1, log: true, step: 1e-2}\n"}, "either log-scaled or stepped"),
        (["tune", "--task", "digits-cnn", "--space", "s.yaml", "--out", "run"],
         {"s.yaml": "epochs: {low: 1, high: 2.5}\n"}, "is a whole number"),
        (["tune", "--task", "digits-cnn", "--space", "s.yaml", "--out", "run"],
         {"s.yaml": "label_smoothing: {low: 0.0, high: 1.5}\n"}, "label_smoothing must be in [0, 1)"),
        # spent trials that scored alike and reported the value as tuned
        (["tune", "--task", "digits-cnn", "--space", "s.yaml", "--out", "run"],
         {"s.yaml": "momentum: [0.0, 0.99]\n"}, "add optimizer: [sgd]"),  # rich ate "[sgd]"
        (["tune", "--task", "digits-cnn", "--space", "s.yaml", "--out", "run"],
         {"s.yaml": "batch_size: [64.0]\n"}, "is a whole number, got 64.0"),  # an engine traceback
        (["tune", "--task", "digits-cnn", "--space", "s.yaml", "--out", "run"],
         {"s.yaml": "gamma: [0.1, 0.9]\n"}, "apply to the step schedule"),
        (["quantize", "--task", "digits-cnn", "--target", "onnxruntime", "--lr", "0.1", "--out", "run"], {},
         "add --qat"),  # was: silently unused
        (["prune", "--task", "digits-cnn", "--unstructured", "--ratio", "0.3", "--head-ratio", "0.5",
          "--out", "run"], {}, "head_ratio/ffn_ratio"),
        (["bench", "--task", "digits-cnn", "--max-drop", "-3", "--out", "run"], {}, "--max-drop must be"),
        (["train", "--task", "digits-cnn", "--resume", "--out", "run"], {}, "nothing to resume"),  # was: fresh start
        # distill options that change nothing were accepted and recorded as if they had
        (["distill", "--task", "digits-cnn", "--student", "digits-cnn", "--alpha", "0", "--temperature", "2",
          "--out", "run"], {}, "--temperature has no effect with --alpha 0"),
        (["distill", "--task", "digits-cnn", "--student", "digits-cnn", "--alpha", "1", "--label-fraction", "0.1",
          "--no-alone", "--out", "run"], {}, "has no effect with alpha 1"),
        (["distill", "--task", "digits-cnn", "--student", "digits-cnn", "--pairs", "a=b", "--out", "run"], {},
         "both weights are 0"),
        (["bench", "--task", "digits-cnn", "--out", "afile"], {"afile": "x"}, "is a file, not a folder"),
    ],
)
def test_bad_values_are_usage_errors_before_any_work_and_leave_no_folder(argv, files, message, capsys, tmp_path,
                                                                         monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name, content in files.items():
        (tmp_path / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    assert main(argv) == 2
    err = " ".join(capsys.readouterr().err.split())  # the console wraps long lines
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_bench_writes_report(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["bench", "--task", "digits-cnn", "--targets", "torch,onnxruntime,openvino,tensorrt",
                 "--threads", "1", "--quick", "--out", str(out)])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["schema_version"] == 2 and report["task"] == "digits-cnn"
    assert report["baseline"]["target"] == "torch"
    targets = {c["target"] for c in report["candidates"]}
    assert {"onnxruntime", "openvino"} <= targets
    base = report["baseline"]["metric"]["value"]
    for c in report["candidates"]:
        assert abs(c["metric"]["value"] - base) <= 0.5
        assert c["size_bytes"] > 0 and c["params"] == report["baseline"]["params"] and c["macs"] > 0
        lat = c["latency_ms"]
        assert lat["batch"] == 1 and lat["ci95"][0] <= lat["median"] <= lat["ci95"][1]
    assert any(s["target"] == "tensorrt" for s in report["skipped"])
    assert (out / "report.md").exists() and (out / "recipe.yaml").exists()
    assert "<svg" in (out / "report.html").read_text()
    from slimkit.report.schema import load_report

    assert load_report(out / "report.json")["best"] == report["best"]
    assert "best:" in capsys.readouterr().out


def test_user_task_file(tmp_path, capsys):
    task_file = tmp_path / "mytask.py"
    task_file.write_text(
        "import torch\n"
        "import slimkit\n"
        "def make():\n"
        "    x = torch.randn(16, 4); y = (x[:, 0] > 0).long()\n"
        "    data = slimkit.Batches({'input': x}, y, batch_size=8)\n"
        "    model = torch.nn.Linear(4, 2)\n"
        "    return slimkit.Task('mine', model, {'input': x[:1]}, data, data, data,\n"
        "                        slimkit.Metric('accuracy', slimkit.accuracy), torch.nn.functional.cross_entropy)\n"
        "def broken():\n"
        "    return 42\n"
    )
    assert main(["bench", "--task", f"{task_file}:make", "--targets", "torch", "--quick",
                 "--out", str(tmp_path / "o")]) == 0
    assert json.loads((tmp_path / "o" / "report.json").read_text())["task"] == "mine"
    assert main(["bench", "--task", f"{task_file}:broken", "--out", str(tmp_path / "p")]) == 1
    assert "not a slimkit.Task" in capsys.readouterr().err
    assert main(["bench", "--task", f"{task_file}:nothere", "--out", str(tmp_path / "p")]) == 2


def test_console_script_runs():
    result = subprocess.run([sys.executable, "-m", "slimkit.cli.main", "--version"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0 and result.stdout.strip()


@pytest.mark.parametrize(
    ("marker", "content", "argv"),
    [
        ("recipe.json", '{"command": "quantize"}', ["bench", "--task", "digits-cnn", "--targets", "torch"]),
        ("tune.json", "{}", ["prune", "--task", "digits-cnn", "--structured", "--ratio", "0.3"]),
        ("distill.json", "{}", ["quantize", "--task", "digits-cnn", "--target", "onnxruntime"]),
        ("recipe.json", '{"command": "bench"}', ["train", "--task", "digits-cnn", "--epochs", "1"]),
        ("settings.json", "{}", ["optimize", "--task", "digits-cnn", "--trials", "1"]),
        ("search.json", '{"sampler": "tpe", "space": {"targets": ["onnxruntime"]}}', ["demo", "--quick"]),
    ],
)
def test_a_folder_holding_another_commands_run_is_refused_and_kept(marker, content, argv, tmp_path, capsys):
    """A second command into one --out mixed the two runs (one report overwritten, the other's
    artifacts beside it); the demo deleted any search folder it was pointed at."""
    out = tmp_path / "run"
    out.mkdir()
    (out / marker).write_text(content)
    assert main([*argv, "--out", str(out)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert ("holds a `slimkit" in err or "the demo did not make" in err) and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == [marker]


def test_the_demo_knows_its_own_earlier_run(tmp_path):
    from slimkit.cli.demo import DEMO_SPACE, _made_by_demo
    from slimkit.search import SearchSpace

    space = SearchSpace(**DEMO_SPACE)
    stored = {k: list(v) if isinstance(v, tuple) else v for k, v in DEMO_SPACE.items()}
    (tmp_path / "search.json").write_text(json.dumps({"sampler": "grid", "space": stored}))
    assert _made_by_demo(tmp_path / "search.json", space)
    (tmp_path / "search.json").write_text(json.dumps({"sampler": "tpe", "space": stored}))
    assert not _made_by_demo(tmp_path / "search.json", space)


def test_a_folder_with_files_slimkit_did_not_write_is_refused_and_kept(tmp_path, capsys):
    """A user's file under --out/artifacts/torch was deleted without a word."""
    keep = tmp_path / "mine" / "artifacts" / "torch" / "important.txt"
    keep.parent.mkdir(parents=True)
    keep.write_text("keep")
    assert main(["bench", "--task", "digits-cnn", "--targets", "torch", "--out", str(tmp_path / "mine")]) == 2
    assert "not a slimkit run" in capsys.readouterr().err and keep.read_text() == "keep"
    assert main(["bench", "--task", "digits-cnn", "--targets", "torch", "--out", ""]) == 2  # wrote into the cwd
    assert "--out is empty" in capsys.readouterr().err


def test_a_failure_before_any_output_leaves_no_empty_folder(tmp_path, monkeypatch, capsys):
    from slimkit.errors import TaskError
    from slimkit.pipeline import skeleton

    def broken(*_a, **_k):
        raise TaskError("the task could not be built")

    monkeypatch.setattr(skeleton, "load_task", broken)
    assert main(["bench", "--task", "digits-cnn", "--targets", "torch", "--out", str(tmp_path / "run")]) == 1
    assert not (tmp_path / "run").exists()


def test_the_api_removes_the_folder_it_made_for_a_refused_run(tmp_path):
    import slimkit

    with pytest.raises(UsageError, match="no-such-layer"):  # found only after the baseline was measured
        slimkit.quantize("digits-cnn", "int8-static", "onnxruntime", out=tmp_path / "new", exclude=["no-such-layer"],
                         threads=1, quick=True)
    assert not (tmp_path / "new").exists()


def test_a_rerun_keeps_only_its_own_artifacts(tmp_path):
    import slimkit

    out = tmp_path / "run"
    first = slimkit.benchmark("digits-cnn", ["onnxruntime", "onnxruntime"], out=out, threads=1, quick=True)
    assert [c.id for c in first.candidates] == ["onnxruntime"]  # a repeated target gave two rows, one folder
    slimkit.benchmark("digits-cnn", ["torch"], out=out, threads=1, quick=True)
    assert sorted(p.name for p in (out / "artifacts").iterdir()) == ["torch"]  # onnxruntime's was left behind


def test_user_code_errors_are_one_line_each(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "helper.py").write_text("WIDTH = 64\n")
    (tmp_path / "mine.py").write_text(
        "import torch\nfrom torch import nn\nfrom helper import WIDTH  # a module beside the task file\n"
        "def raises():\n    raise RuntimeError('boom in user code')\n"
        "def student():\n    return nn.Sequential(nn.Linear(WIDTH, 10))\n")
    argv = ["distill", "--task", "digits-cnn", "--epochs", "1", "--quick", "--threads", "1"]
    assert main([*argv, "--student", "mine.py:raises", "--out", "a"]) == 1
    err = capsys.readouterr().err
    assert "mine.py:raises raised RuntimeError: boom in user code" in " ".join(err.split()) and "Traceback" not in err
    assert main([*argv, "--student", "mine.py:student", "--out", "b"]) in (1, 2)
    err = " ".join(capsys.readouterr().err.split())
    assert "Sequential.forward() does not take" in err and "index" not in err  # named the internal Distiller


def test_a_metric_must_give_one_number_and_batches_named_inputs():
    import torch

    from slimkit.core.task import Metric
    from slimkit.errors import ShapeError, TaskError
    from slimkit.targets.base import Deployed

    per_item = Metric("acc", lambda o, t: (o.argmax(1) == t).float())
    with pytest.raises(TaskError, match="returned a tensor of shape \\[2\\], not one number"):
        per_item.compute(torch.eye(2), torch.tensor([0, 1]))
    class Echo(Deployed):
        def _run(self, inputs):
            return inputs["x"]

    deployed = Echo("torch", None, {"x": [None, 4]})
    with pytest.raises(ShapeError, match="not named tensors"):  # was: Tensor.__contains__ traceback
        deployed.check_inputs(torch.zeros(1, 4))


def test_a_task_functions_own_slimkit_error_passes_through_once(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.py").write_text("from slimkit.errors import TaskError\n"
                                   "def make():\n    raise TaskError('no data here', hint='add data.npz')\n")
    assert main(["bench", "--task", "t.py:make", "--out", "run"]) == 1
    err = capsys.readouterr().err
    assert "error: no data here" in err and err.count("hint:") == 1  # it was wrapped: two hints
