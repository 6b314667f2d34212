"""The search's report, rebuilt from the study's storage alone, and the choice of its best model."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from slimkit.measure.env import environment
from slimkit.pipeline import command_line, finalize, meets_floor, pareto_ids, write_run_recipe
from slimkit.report.schema import Entry, Report
from slimkit.search._settings import SearchSettings, as_settings
from slimkit.search._storage import shown_url


def build_report(settings: SearchSettings | Mapping[str, Any], study: Any, baseline: Entry,
                 elapsed: float) -> Report:
    """The report from the study's storage alone: every finished trial, constraints, Pareto, best."""
    settings = as_settings(settings)
    out = Path(settings.out)
    report = Report(settings.title, command_line("optimize"), environment(settings.threads), baseline)
    float_by_target = _add_references(report, out)
    failed, stopped, skipped, interrupted = _add_trials(report, study, float_by_target)
    for c in report.candidates:
        c.float_reference = float_by_target.get(c.target)
    finalize(report, settings.max_drop, settings.latency_budget, settings.size_budget, settings.objective)
    _size_front(report)
    report.extra["search"] = {
        "sampler": settings.sampler, "pruner": settings.pruner, "workers": settings.workers,
        "storage": shown_url(settings.storage), "space": settings.space,  # a report is shared: no password
        "trials_finished": sum(not c.id.startswith("ref:") for c in report.candidates),
        "trials_failed": failed, "trials_stopped_early": stopped, "points_skipped": skipped,
        # Samplers re-propose measured points in small spaces; those trials are answered from the study.
        "trials_repeated": sum(t.state.name == "COMPLETE" and "duplicate_of" in t.user_attrs for t in study.trials),
        "trials_interrupted": interrupted, "seconds": round(elapsed, 1), "closest": closest(report, settings),
    }
    return report


def closest(report: Report, settings: SearchSettings) -> dict[str, str] | None:
    """With no best: the candidate nearest to it (meeting the floor first, then by metric and speed) and
    what it missed; None when there is a best."""
    if report.best is not None or not report.candidates:
        return None
    floor = settings.metric_floor
    near = max(report.candidates, key=lambda c: (meets_floor(c.measurement.metric, floor), c.measurement.metric,
                                                 -c.latency_ms))
    return {"id": near.id, "missed": _what_missed(near, settings)}


def _add_references(report: Report, out: Path) -> dict[str, str]:
    """The never-slower references (``references.json``) as candidates; returns their ids by target."""
    float_by_target: dict[str, str] = {}
    refs = out / "references.json"
    for raw in json.loads(refs.read_text()) if refs.exists() else []:
        if "failed" in raw:
            report.skipped.append({"target": raw["target"],
                                   "reason": f"its unmodified model (the reference) failed: {raw['failed']}"})
            continue
        entry = Entry.from_dict(raw)
        report.candidates.append(entry)
        float_by_target[entry.target] = entry.id
    return float_by_target


def _add_trials(report: Report, study: Any,
                float_by_target: dict[str, str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                                          list[dict[str, Any]], int]:
    """Every finished trial as a candidate; returns the failed ones, those stopped early, the points
    skipped (not offered here) and how many were interrupted. A trial measuring the unmodified model
    is its target's reference where none is."""
    failed: list[dict[str, Any]] = []
    stopped: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    interrupted = 0
    for t in sorted(study.trials, key=lambda t: t.number):
        if "entry" in t.user_attrs and t.state.name == "COMPLETE":
            entry = Entry.from_dict(t.user_attrs["entry"])
            report.candidates.append(entry)
            if len(entry.recipe) == 1:  # only the target step: the unmodified model there
                float_by_target.setdefault(entry.target, entry.id)
        elif "stopped_early" in t.user_attrs:
            stopped.append({"trial": t.number, "recipe": t.user_attrs.get("recipe"),
                            "why": t.user_attrs["stopped_early"]})
        elif t.user_attrs.get("interrupted"):
            interrupted += 1
        elif t.user_attrs.get("over_budget"):
            continue
        elif t.user_attrs.get("skipped"):
            skipped.append({"trial": t.number, "recipe": t.user_attrs.get("recipe"),
                            "why": str(t.user_attrs.get("error", "not run")).removeprefix("not run: ")})
        elif t.state.name in ("FAIL", "PRUNED"):
            failed.append({"trial": t.number, "recipe": t.user_attrs.get("recipe"),
                           "error": t.user_attrs.get("error", t.state.name.lower())})
    return failed, stopped, skipped, interrupted


def _best_folder(report: Report, out: Path) -> Path | None:
    """The folder of the best's files in this run folder (a trial's, or a reference's), or None where
    another process sharing the study measured it."""
    best = report.entry(report.best or "")
    if best.id.startswith("ref:"):
        src = out / "references" / best.target
    else:
        src = out / "trials" / best.id.split(":")[0].lstrip("t").zfill(4)
    return src if src.is_dir() else None


def _copy_best(report: Report, out: Path, settings: SearchSettings) -> None:
    """The best trial's artifact folder, copied to ``out/best`` (replacing one copied before), with
    the best's resolved ``recipe.yaml``: ``slimkit run best/ --task ...`` measures it again."""
    if not report.best:
        shutil.rmtree(out / "best", ignore_errors=True)  # an earlier finish's best is not this report's
        report.extra["search"].pop("best_artifact", None)
        return
    best = report.entry(report.best)
    src = _best_folder(report, out)
    if src is not None:
        dest = out / "best"
        tmp = out / ".best.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp)
        # A search entry's recipe ends with its target as a pseudo-step; the recipe file lists targets apart.
        steps = [step for step in best.recipe if step.get("type") != "target"]
        write_run_recipe(tmp / "recipe.yaml", command="optimize", task=settings.title, steps=steps,
                         targets=[best.target], max_drop=settings.max_drop, seed=settings.seed,
                         threads=settings.threads)
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)
        report.extra["search"]["best_artifact"] = str(dest.relative_to(out))


def _size_front(report: Report) -> None:
    report.extra["pareto_metric_size"] = pareto_ids(report.entries, lambda e: e.measurement.size_bytes)


def _what_missed(entry: Entry, settings: SearchSettings) -> str:
    m = entry.measurement
    missed = []
    if not meets_floor(m.metric, settings.metric_floor):
        missed.append(f"{m.metric_name} {m.metric:.4g} below the floor {settings.metric_floor:.4g}")
    if settings.latency_budget and m.latency.median > settings.latency_budget:
        missed.append(f"latency {m.latency.median:.3f} ms over the budget {settings.latency_budget} ms")
    if settings.size_budget and m.size_bytes > settings.size_budget:
        from slimkit.report._format import fmt_bytes

        missed.append(f"size {fmt_bytes(m.size_bytes)} over the budget {fmt_bytes(settings.size_budget)}")
    if missed:
        return "; ".join(missed)
    if len(entry.recipe) == 1 and entry.target == "torch":  # only the target step: the baseline itself
        return "it meets the constraints but is the unmodified model on torch eager: no faster candidate was found"
    return "it meets the constraints but is no faster than the unmodified model"
