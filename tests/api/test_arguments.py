"""The Python API given wrong kinds of arguments: a clear SlimkitError, never letters of a string
taken as names or a TypeError from deep inside."""

from __future__ import annotations

import pathlib

import pytest

import slimkit
from slimkit.errors import SlimkitError, UsageError
from slimkit.search import SearchSpace
from tests.conftest import make_tiny_task


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda out: slimkit.benchmark("digits-cnn", threads=1.5, out=out), "threads must be a whole number"),
        (lambda out: slimkit.benchmark("digits-cnn", targets=[], out=out), "no targets given"),
        (lambda out: slimkit.benchmark("digits-cnn", max_drop="1", out=out), "--max-drop must be a number"),
        (lambda out: slimkit.prune("digits-cnn", targets=5, out=out), "targets must be a list of names"),
        (lambda out: slimkit.optimize("digits-cnn", trials=1.5, out=out), "--trials must be a whole number"),
        (lambda out: slimkit.optimize("digits-cnn", time_budget="1", trials=None, out=out), "must be a number"),
        (lambda out: slimkit.optimize("digits-cnn", targets=["onnxruntime"], space=SearchSpace(targets=("openvino",)),
                                      out=out), "differ from the space's"),
        (lambda out: slimkit.optimize("digits-cnn", space=[1], out=out), "space must be a SearchSpace"),
        (lambda out: slimkit.optimize(make_tiny_task("mlp"), workers=2, out=out), "Task object lives in this process"),
        (lambda out: slimkit.load_task(None), "a task is a name"),
        (lambda out: SearchSpace(targets=("bogus",)), "unknown target(s) 'bogus'"),
    ],
)
def test_wrong_argument_kinds_are_usage_errors(call, message, tmp_path):
    with pytest.raises(UsageError) as err:
        call(tmp_path / "run")
    assert message in str(err.value)


def test_one_name_given_as_a_string_is_one_name(tmp_path):
    assert SearchSpace(targets="openvino", quant_scheme="int8-static").targets == ("openvino",)
    assert slimkit.load_task(pathlib.Path("digits-cnn")).name == "digits-cnn"
    with pytest.raises(SlimkitError, match="'onnxruntimex'"):  # the whole string, not its letters
        slimkit.benchmark("digits-cnn", targets="onnxruntimex", out=tmp_path / "b")


def test_optimize_takes_a_task_object(tmp_path):
    task = make_tiny_task("mlp")
    report = slimkit.optimize(task, space=SearchSpace(targets=("onnxruntime",), fuse=(False,)), trials=1,
                              sampler="grid", out=tmp_path / "o", quick=True, threads=1)
    assert report.task == task.name and len(report.candidates) == 1
