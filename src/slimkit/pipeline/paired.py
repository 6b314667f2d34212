"""Every speed-up a paired ratio, and the best chosen by one.

Each entry is timed when it is measured, the baseline once, at the start: a ratio of the two divides
timings taken at different moments, and on a shared machine those differ by multiples (torch eager's
OpenMP threads wait for a core another process holds: 7.5 ms in one run, 496 ms in another). Here
the baseline, the leading candidates and their references (the unmodified model on each target) are
loaded again and timed in interleaved rounds; each speed-up is the median of its per-round ratios,
with a 95% interval, and the best is picked by those ratios.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from slimkit.core.task import Task
from slimkit.errors import SlimkitError
from slimkit.measure.latency import interleaved_rounds, paired_ratio
from slimkit.measure.load import NOTICEABLE, OtherLoad
from slimkit.pipeline.describe import artifact_folder
from slimkit.pipeline.select import meets_floor
from slimkit.report.schema import Entry, Report
from slimkit.targets import get_target
from slimkit.targets.manifest import MANIFEST

LEADING = 6  # candidates re-timed at most: a search's fastest ones that meet the constraints


def leading(report: Report, count: int = LEADING) -> list[str]:
    """The candidates worth pairing: those meeting the constraints, fastest first (by their own
    timings), then the rest while there is room (a report of a few entries pairs them all)."""
    meets = sorted((c for c in report.candidates if c.meets_constraints), key=lambda c: c.latency_ms)
    rest = sorted((c for c in report.candidates if not c.meets_constraints), key=lambda c: c.latency_ms)
    return [c.id for c in [*meets, *rest][:count]]


def pair_speedups(report: Report, task: Task, out: Path, threads: int, *, quick: bool = False,
                  ids: Sequence[str] | None = None, say: Callable[[str], None] | None = None) -> dict[str, Any] | None:
    """Time the baseline, the candidates ``ids`` (default: :func:`leading`) and their references in
    interleaved rounds; set each one's ``speedup`` and pick the best again by those ratios. Returns
    what was done (rounds, load), or None where nothing could be loaded again."""
    ids = list(ids) if ids is not None else leading(report)
    wanted = {i for i in ids}
    for i in ids:
        ref = report.entry(i).float_reference
        if ref and ref != "baseline":
            wanted.add(ref)
    inputs = task.example_inputs
    runners: dict[str, Callable[[], object]] = {}
    scratch = Path(tempfile.mkdtemp(prefix="slimkit-paired-"))
    try:
        torch.set_num_threads(threads)
        eager = get_target("torch").deploy(task.build_model(), inputs, scratch, threads)
        runners["baseline"] = lambda: eager.run(inputs)
        for entry in report.candidates:
            if entry.id in wanted and (run := _runner(entry, out, task, threads)) is not None:
                runners[entry.id] = run
        if len(runners) < 2:
            return None
        if say is not None:
            say(f"timing {len(runners) - 1} model(s) in turns with the baseline (paired speed-ups)")
        rounds, runs, block_ms = (5, 3, 5.0) if quick else (15, 5, 20.0)
        with OtherLoad() as load:
            samples = interleaved_rounds(runners, rounds=rounds, runs=runs, min_block_ms=block_ms)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    method = f"paired: {rounds} interleaved rounds of blocks of >= {runs} calls and >= {block_ms:g} ms"
    busy = load.cores is not None and load.cores >= NOTICEABLE
    base_ms = _median(samples["baseline"])
    report.baseline.speedup = {"value": 1.0, "ci95": [1.0, 1.0], "reference": "baseline", "ms": round(base_ms, 4),
                               "method": method}
    for entry in report.candidates:
        if entry.id not in samples:
            continue
        value, ci = paired_ratio(samples["baseline"], samples[entry.id])
        entry.speedup = {"value": round(value, 3), "ci95": [round(ci[0], 3), round(ci[1], 3)],
                         "reference": "baseline", "ms": round(_median(samples[entry.id]), 4),
                         "baseline_ms": round(base_ms, 4), "method": method}
        ref = entry.float_reference
        if ref and ref != entry.id and ref in samples:
            v, c = paired_ratio(samples[ref], samples[entry.id])
            entry.speedup["vs_float"] = {"value": round(v, 3), "ci95": [round(c[0], 3), round(c[1], 3)],
                                         "reference": ref}
        if busy:
            entry.speedup["busy_cores"] = round(float(load.cores or 0.0), 2)
    _choose_best(report)
    return {"method": method, "paired": sorted(samples), "other_load_cores": load.cores, "busy": busy}


def _runner(entry: Entry, out: Path, task: Task, threads: int) -> Callable[[], object] | None:
    """``entry``'s artifact loaded again as :func:`slimkit.load` does (torch weights into the task's
    model), or None where it kept none or cannot be loaded (it keeps its unpaired timing)."""
    from slimkit.pipeline.load import load

    folder = artifact_folder(entry, out)
    if folder is None or not (folder / MANIFEST).is_file():
        return None
    try:
        deployed = load(folder, model=task.build_model(), threads=threads).deployed
    except (SlimkitError, RuntimeError, OSError):
        return None
    inputs = task.example_inputs
    return lambda: deployed.run(inputs)


def _median(rounds: list[list[float]]) -> float:
    return statistics.median(x for block in rounds for x in block)


def _value(entry: Entry, which: str = "") -> float:
    """The paired speed-up over the baseline, or over the float reference (``vs_float``; +inf where
    the entry has none: nothing to be slower than)."""
    sp = entry.speedup or {}
    part = sp.get(which) if which else sp
    return float(part["value"]) if part else (float("inf") if which else 0.0)


def _choose_best(report: Report) -> None:
    """The best by paired speed-up: the largest among candidates meeting the constraints that are
    faster than the baseline and than the unmodified model on their target, each in turns with it."""
    floor = report.constraints.get("metric_floor")
    paired = [c for c in report.candidates if c.speedup and c.meets_constraints
              and (floor is None or meets_floor(c.measurement.metric, floor))]
    faster = [c for c in paired if _value(c) > 1.0 and _value(c, "vs_float") > 1.0]
    old = report.best
    if not paired:
        return  # nothing paired: the choice on the entries' own timings stands
    report.best = max(faster, key=_value).id if faster else None
    if report.best != old:
        if report.best is not None:
            report.entry(report.best).notes.append(
                "best by its paired speed-up (timed in turns with the baseline and the references)"
                + (f"; {old} led on the timings taken when each was measured" if old else ""))
        elif old is not None:
            report.entry(old).notes.append("timed in turns with the baseline and its reference, it was no "
                                           "faster: not the best")
