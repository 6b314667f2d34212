"""report.md and report.html: the same sections from a report's extra entries, and readable plots."""

from __future__ import annotations

import html
import json
from typing import Any

import pytest

from slimkit.report.html import to_html
from slimkit.report.markdown import to_markdown
from slimkit.report.schema import Report

ENV = {"cpu": {"model": "test cpu", "cores": 2, "flags": []}, "threads": 2, "versions": {"torch": "x"}}


def _entry(entry_id: str, ms: float, metric: float, size: int = 1000, target: str = "torch") -> dict[str, Any]:
    return {"id": entry_id, "recipe": [], "target": target, "metric": {"name": "accuracy", "value": metric},
            "latency_ms": {"batch": 1, "median": ms, "p90": round(ms * 1.1, 4),
                           "ci95": [round(ms * 0.9, 4), round(ms * 1.1, 4)], "mean": ms, "runs": 50},
            "throughput": {"batch": 8, "items_per_s": 100.0}, "size_bytes": size, "params": 10, "macs": 100,
            "peak_memory_bytes": 0, "artifact": None, "pareto": True, "meets_constraints": True,
            "details": {}, "notes": [], "float_reference": None, "missed": [], "speedup": None}


def _report(extra: dict[str, Any], candidates: list[dict[str, Any]] | None = None) -> Report:
    data = {"schema_version": 2, "task": "t", "command": "slimkit x", "created": "now", "environment": ENV,
            "constraints": {"metric_floor": 98.0}, "baseline": _entry("baseline", 10.0, 99.0, 4000),
            "candidates": candidates or [_entry("c1", 2.0, 98.5, 1000, "onnxruntime")], "best": "c1",
            "skipped": [], **extra}
    report = Report.from_dict(data)
    assert report.to_dict() == data  # report.json read back gives the same report
    return report


PRUNING = {"mode": "structured", "method": "graph", "note": "round_to=8 moved the removal of 1 of 2 channel groups",
           "config": {"type": "prune", "version": 1, "data": {"ratio": 0.3, "criterion": "l2", "round_to": 8}},
           "macs_before_after": [2_000_000, 1_000_000], "params_before_after": [5000, 2500], "macs_reduction": 2.0,
           "layers": {"conv1": [32, 24], "conv2": [64, 48]}, "heads": {}, "sparsity": None,
           "metric_after_prune_before_recovery": 50.0, "metric_after_recovery": 98.5,
           "recovery": {"epochs": 2, "stopped_early": True}}
QUANT = {"scheme": "int8-static", "target": "onnxruntime", "engine": "ort", "float_layers": ["node_Conv_1"],
         "details": {"calibration": "minmax", "samples": 300, "float_layer_modules": {"node_Conv_1": "conv1"},
                     "accuracy_aware": {"max_drop": 0.5, "met": True,
                                        "trials": [{"float_layers": 0, "metric": 97.0},
                                                   {"float_layers": 1, "metric": 98.9}]}}}
SENS = [{"layer": "node_Conv_2", "origin": "conv2", "metric": 99.0, "drop": 0.0, "output_error": 1e-4},
        {"layer": "node_Conv_1", "origin": "conv1", "metric": 97.0, "drop": 2.0, "output_error": 3e-2}]
SEARCH = {"sampler": "tpe", "pruner": "none", "workers": 1, "trials_finished": 5, "seconds": 12.5,
          "trials_failed": [{"trial": 3, "error": "export failed | badly"}], "space": {"targets": ["onnxruntime"]},
          "closest": None, "best_artifact": "best",
          "retimed": {"method": "interleaved", "best": "c1", "best_ms": 2.0, "baseline_ms": 10.0, "speedup": 5.0,
                      "speedup_in_table": 5.0, "other_load_cores": 0.0}}


@pytest.mark.parametrize("render", [to_markdown, to_html])
def test_both_formats_show_what_the_run_did(render):
    """report.md used to stop after the table; the pruning/quantization facts were only a JSON dump in html."""
    text = html.unescape(render(_report({"pruning": PRUNING, "quantization": QUANT, "sensitivity": SENS,
                                         "search": SEARCH})))
    for fact in ("Pruning", "MACs 2.00M -> 1.00M (2.00x fewer)", "after recovery 98.5000", "stopped early",
                 "round_to=8 moved", "conv1", "25%", "Quantization", "1 layer(s) kept in float: conv1 (node_Conv_1)",
                 "max drop 0.5: met", "Per-layer sensitivity", "Search", "5 trials measured, 1 failed",
                 "export failed", "= 5.0x"):
        assert fact in text, fact
    # The most sensitive layer comes first, named after its module.
    assert text.index("conv1 (node_Conv_1)", text.index("sensitivity")) < text.index("conv2 (node_Conv_2)")


def test_markdown_tables_escape_pipes_and_stay_short():
    many = dict(PRUNING, layers={f"l{i}": [16, 8] for i in range(30)})
    md = to_markdown(_report({"pruning": many, "search": SEARCH}))
    assert "export failed \\| badly" in md
    assert "| l19 |" in md and "| l20 |" not in md and "(10 more rows in report.json)" in md


def test_transformer_pruning_lists_heads_and_neurons():
    bert = dict(PRUNING, method="bert", layers={}, heads={"encoder.layer.0": [12, 8, 1536, 672]})
    md = to_markdown(_report({"pruning": bert}))
    assert "| encoder.layer.0 | 12 -> 8 | 1536 -> 672 |" in md


def test_latency_axis_is_labelled_whatever_the_range():
    """A log axis spanning less than a decade showed no tick label at all; such ranges are linear now."""
    narrow = to_html(_report({}, [_entry("c1", 8.0, 98.5, 3000, "onnxruntime")]))  # 8 to 10 ms
    assert "batch-1 latency, ms</" in narrow.replace("\n", "") or "batch-1 latency, ms (log)" not in narrow
    wide = to_html(_report({}, [_entry("c1", 0.2, 98.5, 3000, "onnxruntime")]))  # 0.2 to 10 ms
    assert "batch-1 latency, ms (log)" in wide


def test_more_threads_than_cores_is_flagged():
    """--threads 64 on 2 cores was accepted and its 81x speed-up printed without a word."""
    report = _report({})
    report.environment = {**ENV, "threads": 64}
    assert "64 threads on 2 cores" in to_markdown(report) and "64 threads on 2 cores" in to_html(report)
    assert "threads on" not in to_markdown(_report({}))


def test_a_best_within_timing_noise_of_the_baseline_says_so():
    """A model identical to the baseline was "best" at 1.01x with overlapping intervals, without a word."""
    from slimkit.pipeline import finalize

    report = _report({}, [_entry("same", 9.9, 99.0), _entry("fast", 2.0, 99.0, target="onnxruntime")])
    finalize(report, max_drop=1.0)
    assert report.best == "fast" and not any("noise" in n for n in report.entry("fast").notes)
    report = _report({}, [_entry("same", 9.9, 99.0)])
    finalize(report, max_drop=1.0)
    assert report.best == "same" and "within timing noise of baseline" in report.entry("same").notes[0]


def test_each_candidate_says_which_constraint_it_missed(tmp_path):
    from slimkit.pipeline import finalize
    from slimkit.report import write_report

    report = _report({}, [_entry("slow", 9.0, 99.5), _entry("lossy", 2.0, 90.0, target="onnxruntime")])
    finalize(report, max_drop=1.0, latency_budget=5.0)
    assert report.entry("slow").missed == ["latency 9.000 ms over the budget 5 ms"]
    assert report.entry("lossy").missed[0].startswith("accuracy 90.00 below the floor")
    assert report.entry("baseline").missed and not report.best
    write_report(report, tmp_path)
    assert "misses latency" in (tmp_path / "report.md").read_text()
    assert json.loads((tmp_path / "report.json").read_text())["candidates"][0]["missed"] == report.entry("slow").missed
