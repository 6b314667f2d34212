"""The hostile-input suite: what a careless or hostile user gives every command, and what each must do.

Each case: a clear error (exit 2 for usage, 1 for a failure), the message naming what is wrong, no
traceback and no "internal error", no folder left that the run made, nothing of the user's changed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from slimkit.cli.main import main
from tests.hostile._tasks import SOURCE

Q = ["--quick", "--threads", "1"]
B = ["bench", "--task", "digits-cnn", "--targets", "torch", *Q]


def _files(tmp: Path) -> None:
    """What a case may name: a task file, spaces and recipes, a user's folder and files."""
    (tmp / "tasks.py").write_text(SOURCE)
    (tmp / "syntax.py").write_text("def make(:\n")
    (tmp / "user").mkdir()
    (tmp / "user" / "mine.txt").write_text("the user's own file")
    (tmp / "afile").write_text("a file, not a folder")
    (tmp / "tune-run").mkdir()
    (tmp / "tune-run" / "tune.json").write_text("{}")
    spaces = {"bad.yaml": "targets: [onnxruntime\n", "list.yaml": "- 1\n- 2\n", "hot.yaml":
              "targets: [onnxruntime]\nprune_ratio: [0.3]\ndistill: [true]\ntemperature: [hot]\n",
              "fuse.yaml": "fuse: [maybe]\n", "ratio.yaml": "prune_ratio: [2]\n", "unknown.yaml": "colour: [red]\n",
              "bomb.yaml": "a: &a [1, 2, 3, 4, 5, 6, 7, 8, 9]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                           "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n",
              "tune.yaml": "colour: [red]\n", "tunebad.yaml": "lr: {low: 1, high: 0.1}\n"}
    for name, text in spaces.items():
        (tmp / name).write_text(text)
    (tmp / "badrecipe").mkdir()
    (tmp / "badrecipe" / "recipe.yaml").write_text("steps: [{type: teleport}]\ntargets: [torch]\n")
    (tmp / "garbled").mkdir()
    (tmp / "garbled" / "recipe.yaml").write_text("steps: [unclosed\n")
    (tmp / "nomanifest").mkdir()
    (tmp / "nomanifest" / "model.onnx").write_bytes(b"not onnx")
    (tmp / "texts.txt").write_text("hello\n")


CASES: list[tuple[str, list[str], int, str]] = [
    # --- arguments every command takes
    ("unknown task", ["bench", "--task", "nosuch", *Q], 2, "nosuch"),
    ("unknown target", [*B[:3], "--targets", "nosuch", *Q], 2, "nosuch"),
    ("empty target list", [*B[:3], "--targets", ",", *Q], 2, "target"),
    ("zero threads", [*B[:5], "--quick", "--threads", "0"], 2, "threads"),
    ("threads beyond the CPUs", [*B[:5], "--quick", "--threads", "100000"], 2, "CPUs"),
    ("threads not a number", [*B[:5], "--quick", "--threads", "many"], 2, "threads"),
    ("negative seed", [*B, "--seed", "-1"], 2, "seed"),
    ("huge seed", [*B, "--seed", "99999999999999999999"], 2, "seed"),
    ("negative budget", [*B, "--max-drop", "-1"], 2, "max-drop"),
    ("NaN budget", [*B, "--max-drop", "nan"], 2, "max-drop"),
    ("infinite budget", [*B, "--max-drop", "inf"], 2, "max-drop"),
    ("empty --out", [*B, "--out", ""], 2, "empty"),
    ("--out is a file", [*B, "--out", "{tmp}/afile"], 2, "is a file"),
    ("--out holds the user's files", [*B, "--out", "{tmp}/user"], 2, "not a slimkit run"),
    ("--out holds another command's run", [*B, "--out", "{tmp}/tune-run"], 2, "tune"),
    ("unknown option", [*B, "--turbo"], 2, "turbo"),
    # --- quantize
    ("unknown scheme", ["quantize", "--task", "digits-cnn", "--scheme", "int9", *Q], 2, "int9"),
    ("unknown quantize target", ["quantize", "--task", "digits-cnn", "--target", "tpu", *Q], 2, "tpu"),
    ("zero samples", ["quantize", "--task", "digits-cnn", "--target", "onnxruntime", "--samples", "0", *Q], 2,
     "samples"),
    ("negative samples", ["quantize", "--task", "digits-cnn", "--target", "onnxruntime", "--samples", "-5", *Q],
     2, "samples"),
    ("samples with dynamic int8", ["quantize", "--task", "digits-cnn", "--target", "onnxruntime", "--scheme",
                                   "int8-dynamic", "--samples", "10", *Q], 2, "samples"),
    ("default samples with dynamic int8", ["quantize", "--task", "digits-cnn", "--target", "onnxruntime",
                                           "--scheme", "int8-dynamic", "--samples", "300", *Q], 2, "samples"),
    ("default group size outside int4", ["quantize", "--task", "digits-cnn", "--target", "onnxruntime",
                                         "--group-size", "128", *Q], 2, "group"),
    ("group size outside int4", ["quantize", "--task", "digits-cnn", "--target", "onnxruntime", "--group-size",
                                 "32", *Q], 2, "group"),
    ("QAT with zero epochs", ["quantize", "--task", "digits-cnn", "--target", "onnxruntime", "--qat", "--epochs",
                              "0", *Q], 2, "epochs"),
    ("QAT with a NaN rate", ["quantize", "--task", "digits-cnn", "--target", "onnxruntime", "--qat", "--lr",
                             "nan", *Q], 2, "lr"),
    ("exclude a layer that is not there", ["quantize", "--task", "digits-cnn", "--target", "onnxruntime",
                                           "--exclude", "no.such.layer", *Q], 2, "no.such.layer"),
    ("unknown calibration", ["quantize", "--task", "digits-cnn", "--target", "onnxruntime", "--calibration",
                             "vibes", *Q], 2, "vibes"),
    ("negative quantize budget", ["quantize", "--task", "digits-cnn", "--target", "onnxruntime", "--max-drop",
                                  "-0.5", *Q], 2, "max-drop"),
    # --- prune
    ("ratio above 1", ["prune", "--task", "digits-cnn", "--structured", "--ratio", "1.5", *Q], 2, "ratio"),
    ("negative ratio", ["prune", "--task", "digits-cnn", "--structured", "--ratio", "-0.1", *Q], 2, "ratio"),
    ("NaN ratio", ["prune", "--task", "digits-cnn", "--structured", "--ratio", "nan", *Q], 2, "ratio"),
    ("NaN MAC target", ["prune", "--task", "digits-cnn", "--structured", "--ratio", "0.3", "--target-macs", "nan",
                        *Q], 2, "target_macs"),
    ("MAC target below 1", ["prune", "--task", "digits-cnn", "--structured", "--ratio", "0.3", "--target-macs",
                            "0.5", *Q], 2, "target_macs"),
    ("unknown criterion", ["prune", "--task", "digits-cnn", "--structured", "--ratio", "0.3", "--criterion",
                           "luck", *Q], 2, "luck"),
    ("unknown scope", ["prune", "--task", "digits-cnn", "--structured", "--ratio", "0.3", "--scope", "galaxy",
                       *Q], 2, "galaxy"),
    ("negative recovery epochs", ["prune", "--task", "digits-cnn", "--structured", "--ratio", "0.3",
                                  "--recover-epochs", "-1", *Q], 2, "recover"),
    ("unknown recovery", ["prune", "--task", "digits-cnn", "--structured", "--ratio", "0.3", "--recover",
                          "prayer", *Q], 2, "prayer"),
    ("NaN recovery rate", ["prune", "--task", "digits-cnn", "--structured", "--ratio", "0.3", "--lr", "nan", *Q],
     2, "lr"),
    ("negative prune budget", ["prune", "--task", "digits-cnn", "--structured", "--ratio", "0.3", "--max-drop",
                               "-1", *Q], 2, "max-drop"),
    ("round to zero channels", ["prune", "--task", "digits-cnn", "--structured", "--ratio", "0.3", "--round-to",
                                "0", *Q], 2, "round"),
    ("head ratio of 2", ["prune", "--task", "digits-cnn", "--structured", "--head-ratio", "2", *Q], 2, "head"),
    ("ignore a layer that is not there", ["prune", "--task", "digits-cnn", "--structured", "--ratio", "0.3",
                                          "--ignore", "no.such.layer", *Q], 2, "no.such.layer"),
    # --- distill
    ("zero temperature", ["distill", "--task", "digits-resnet18", "--student", "digits-cnn", "--temperature",
                          "0", *Q], 2, "temperature"),
    ("alpha of 2", ["distill", "--task", "digits-resnet18", "--student", "digits-cnn", "--alpha", "2", *Q], 2,
     "alpha"),
    ("zero distill epochs", ["distill", "--task", "digits-resnet18", "--student", "digits-cnn", "--epochs", "0",
                             *Q], 2, "epochs"),
    ("no labelled items", ["distill", "--task", "digits-resnet18", "--student", "digits-cnn", "--label-fraction",
                           "0", *Q], 2, "label fraction"),
    ("unknown precision", ["distill", "--task", "digits-resnet18", "--student", "digits-cnn", "--precision",
                           "fp7", *Q], 2, "fp7"),
    ("zero batch", ["distill", "--task", "digits-resnet18", "--student", "digits-cnn", "--batch-size", "0", *Q],
     2, "batch"),
    ("unknown student", ["distill", "--task", "digits-resnet18", "--student", "nosuch", *Q], 2, "nosuch"),
    ("malformed pair", ["distill", "--task", "digits-resnet18", "--student", "digits-cnn", "--feature-weight",
                        "1", "--pairs", "a=b=c", *Q], 2, "a=b=c"),
    # --- optimize
    ("zero trials", ["optimize", "--task", "digits-cnn", "--trials", "0", *Q], 2, "trials"),
    ("zero workers", ["optimize", "--task", "digits-cnn", "--workers", "0", *Q], 2, "workers"),
    ("unknown sampler", ["optimize", "--task", "digits-cnn", "--sampler", "oracle", *Q], 2, "oracle"),
    ("unknown pruner", ["optimize", "--task", "digits-cnn", "--pruner", "axe", *Q], 2, "axe"),
    ("missing space file", ["optimize", "--task", "digits-cnn", "--space", "{tmp}/nosuch.yaml", *Q], 2,
     "nosuch.yaml"),
    ("malformed space YAML", ["optimize", "--task", "digits-cnn", "--space", "{tmp}/bad.yaml", *Q], 2, "bad.yaml"),
    ("space that is a list", ["optimize", "--task", "digits-cnn", "--space", "{tmp}/list.yaml", *Q], 2,
     "mapping"),
    ("space value of the wrong type", ["optimize", "--task", "digits-cnn", "--space", "{tmp}/hot.yaml", *Q], 2,
     "hot"),
    ("non-boolean fuse", ["optimize", "--task", "digits-cnn", "--space", "{tmp}/fuse.yaml", *Q], 2, "fuse"),
    ("prune ratio of 2 in a space", ["optimize", "--task", "digits-cnn", "--space", "{tmp}/ratio.yaml", *Q], 2,
     "prune_ratio"),
    ("unknown space field", ["optimize", "--task", "digits-cnn", "--space", "{tmp}/unknown.yaml", *Q], 2,
     "colour"),
    ("YAML alias bomb", ["optimize", "--task", "digits-cnn", "--space", "{tmp}/bomb.yaml", *Q], 2, "space"),
    ("unknown storage", ["optimize", "--task", "digits-cnn", "--storage", "nosuch://x", *Q], 2, "storage"),
    ("resume with nothing there", ["optimize", "--task", "digits-cnn", "--resume", *Q], 2, "nothing to resume"),
    ("zero latency budget", ["optimize", "--task", "digits-cnn", "--latency-budget", "0", *Q], 2, "latency"),
    ("negative size budget", ["optimize", "--task", "digits-cnn", "--size-budget", "-1", *Q], 2, "size"),
    ("NaN time budget", ["optimize", "--task", "digits-cnn", "--time-budget", "nan", *Q], 2, "time"),
    ("huge seed for a search", ["optimize", "--task", "digits-cnn", "--seed", "99999999999999999999", *Q], 2,
     "seed"),
    # --- tune and train
    ("missing tune space", ["tune", "--task", "digits-cnn", "--space", "{tmp}/nosuch.yaml"], 2, "nosuch.yaml"),
    ("unknown tune field", ["tune", "--task", "digits-cnn", "--space", "{tmp}/tune.yaml"], 2, "colour"),
    ("tune range upside down", ["tune", "--task", "digits-cnn", "--space", "{tmp}/tunebad.yaml"], 2, "low"),
    ("zero tune trials", ["tune", "--task", "digits-cnn", "--trials", "0"], 2, "trials"),
    ("zero train epochs", ["train", "--task", "digits-cnn", "--epochs", "0"], 2, "epochs"),
    ("zero train batch", ["train", "--task", "digits-cnn", "--batch-size", "0"], 2, "batch"),
    ("NaN learning rate", ["train", "--task", "digits-cnn", "--lr", "nan"], 2, "lr"),
    ("unknown train precision", ["train", "--task", "digits-cnn", "--precision", "fp7"], 2, "fp7"),
    ("zero processes", ["train", "--task", "digits-cnn", "--nproc", "0"], 2, "nproc"),
    ("huge seed for training", ["train", "--task", "digits-cnn", "--seed", "99999999999999999999"], 2, "seed"),
    ("NaN target metric", ["train", "--task", "digits-cnn", "--until", "nan"], 2, "until"),
    ("negative price", ["train", "--task", "digits-cnn", "--until", "90", "--price-per-core-hour", "-1"], 2,
     "price"),
    ("two nodes without a rendezvous", ["train", "--task", "digits-cnn", "--nnodes", "2"], 2, "rdzv-endpoint"),
    ("a node rank past the nodes", ["train", "--task", "digits-cnn", "--nnodes", "2", "--node-rank", "2",
                                    "--rdzv-endpoint", "127.0.0.1:29400"], 2, "node-rank"),
    ("an objective slimkit does not know", [*B, "--objective", "beauty"], 2, "beauty"),
    ("resume a training run that is not there", ["train", "--task", "digits-cnn", "--resume"], 2, "resume"),
    # --- run and predict
    ("run a folder that is not there", ["run", "{tmp}/nosuch", *Q], 2, "nosuch"),
    ("run a recipe with an unknown step", ["run", "{tmp}/badrecipe", "--task", "digits-cnn", *Q], 2, "teleport"),
    ("run a garbled recipe", ["run", "{tmp}/garbled", "--task", "digits-cnn", *Q], 2, "recipe"),
    ("predict with no model there", ["predict", "--model", "{tmp}/nosuch", "--input", "{tmp}/texts.txt"], 2,
     "nosuch"),
    ("predict with a folder without a manifest", ["predict", "--model", "{tmp}/nomanifest", "--input",
                                                 "{tmp}/texts.txt"], 2, "manifest"),
    ("predict on an input that is not there", ["predict", "--model", "{tmp}/nomanifest", "--input",
                                              "{tmp}/nosuch.txt"], 2, "nosuch"),
    # --- models and data from the command line
    ("unknown torchvision model", ["bench", "--model", "torchvision:nosuchnet", "--data", "csv:{tmp}/x.csv", *Q],
     2, "nosuchnet"),
    ("HF folder that is not there", ["bench", "--model", "hf:{tmp}/nosuch", "--data", "csv:{tmp}/x.csv", *Q], 2,
     "nosuch"),
    ("model file that is not there", ["bench", "--model", "{tmp}/nosuch.py:make", "--data", "csv:{tmp}/x.csv", *Q],
     2, "nosuch.py"),
    ("data file that is not there", ["bench", "--model", "torchvision:resnet18", "--data", "csv:{tmp}/nosuch.csv",
                                     *Q], 2, "nosuch.csv"),
    ("unknown data kind", ["bench", "--model", "torchvision:resnet18", "--data", "parquet:{tmp}/x", *Q], 2,
     "parquet"),
    # --- the user's task code
    ("a forward that raises", ["bench", "--task", "{tmp}/tasks.py:raises", "--targets", "torch", *Q], 1,
     "boom from my forward"),
    ("a metric that is NaN", ["bench", "--task", "{tmp}/tasks.py:nan_metric", "--targets", "torch", *Q], 1,
     "is nan"),
    ("a metric that raises", ["bench", "--task", "{tmp}/tasks.py:raising_metric", "--targets", "torch", *Q], None,
     "ZeroDivisionError"),
    ("a metric of many numbers", ["bench", "--task", "{tmp}/tasks.py:tensor_metric", "--targets", "torch", *Q],
     None, "one number"),
    ("a metric that is a word", ["bench", "--task", "{tmp}/tasks.py:string_metric", "--targets", "torch", *Q],
     None, "returned str"),
    ("no data", ["bench", "--task", "{tmp}/tasks.py:empty", "--targets", "torch", *Q], None, "data"),
    ("a task function that raises", ["bench", "--task", "{tmp}/tasks.py:factory_raises", *Q], None,
     "my factory is broken"),
    ("a task function returning None", ["bench", "--task", "{tmp}/tasks.py:returns_none", *Q], None,
     "not a slimkit.Task"),
    ("a task function that is not there", ["bench", "--task", "{tmp}/tasks.py:nothere", *Q], 2, "nothere"),
    ("a task file with a syntax error", ["bench", "--task", "{tmp}/syntax.py:make", *Q], None, "syntax"),
    ("a model that outputs NaN", ["bench", "--task", "{tmp}/tasks.py:nan_output", "--targets", "torch", *Q], 1,
     "NaN"),
    ("a model that is not a module", ["bench", "--task", "{tmp}/tasks.py:not_a_module", *Q], None, "42"),
    ("inputs the model does not take", ["bench", "--task", "{tmp}/tasks.py:wrong_inputs", "--targets", "torch",
                                        *Q], 2, "shape"),
    ("labels out of range", ["train", "--task", "{tmp}/tasks.py:bad_labels", "--epochs", "1", "--precision",
                             "fp32"], None, "label"),
    ("a search on a forward that raises", ["optimize", "--task", "{tmp}/tasks.py:raises", "--trials", "1", *Q], 1,
     "boom from my forward"),
    ("pruning a forward that raises", ["prune", "--task", "{tmp}/tasks.py:raises", "--structured", "--ratio",
                                       "0.3", *Q], None, "boom from my forward"),
    ("the demo in a folder of the user's", ["demo", "--out", "{tmp}/user", "--quick"], 2, "not a slimkit run"),
    ("the demo in another command's run", ["demo", "--out", "{tmp}/tune-run", "--quick"], 2,
     "tune` run; the demo there"),
]


def _snapshot(tmp: Path) -> dict[str, str]:
    return {str(p.relative_to(tmp)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(tmp.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(("what", "argv", "code", "says"), CASES, ids=[c[0] for c in CASES])
def test_hostile_input_is_a_clear_error_and_changes_nothing(tmp_path: Path, capsys, what: str, argv: list[str],
                                                           code: int | None, says: str) -> None:
    _files(tmp_path)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if "--out" not in argv and argv[0] not in ("predict", "list", "env"):
        argv += ["--out", str(tmp_path / "runs" / "out")]
    before = _snapshot(tmp_path)
    got = main(argv)
    said = capsys.readouterr()
    text = " ".join((said.out + said.err).split())
    assert got in ((1, 2) if code is None else (code,)), f"{what}: exit {got}\n{text[-1500:]}"
    assert "Traceback" not in text and "internal error" not in text, text[-1500:]
    assert says.lower() in text.lower(), f"{what}: {text[-1500:]}"
    assert not (tmp_path / "runs").exists(), f"{what} left {sorted(map(str, (tmp_path / 'runs').rglob('*')))}"
    assert _snapshot(tmp_path) == before  # nothing of the user's changed, nothing stray written beside it
