"""Every speed-up a paired ratio, and the best chosen by one.

Each entry is timed when it is measured, the baseline once, at the start: a ratio of the two divides
timings taken at different moments, and on a shared machine those differ by multiples (torch eager's
OpenMP threads wait for a core another process holds: 7.5 ms in one run, 496 ms in another). Here
the baseline, the leading candidates and their references (the unmodified model on each target) are
loaded again and timed in interleaved rounds; each speed-up is the median of its per-round ratios,
with a 95% interval, and the best is picked by those ratios.
"""

from __future__ import annotations

import math
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from slimkit.core.task import Task
from slimkit.measure.latency import interleaved_rounds, paired_ratio
from slimkit.measure.load import NOTICEABLE, OtherLoad
from slimkit.pipeline.checks import default_threads
from slimkit.pipeline.describe import artifact_folder
from slimkit.pipeline.select import meets_floor
from slimkit.report._format import speedup_of
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
    requested = threads
    threads = free_threads(threads, 0.1 if quick else 0.3)
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
    except Exception as exc:  # noqa: BLE001 - a finished run keeps its report: the entries stay unpaired
        if say is not None:
            say(f"timing in turns failed ({type(exc).__name__}: {str(exc)[:200]}); speed-ups stay unpaired")
        return None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    method = f"paired: {rounds} interleaved rounds of blocks of >= {runs} calls and >= {block_ms:g} ms"
    if threads < requested:
        method += (f", on {threads} thread(s) instead of {requested}: other processes kept the machine busy, and "
                   "threads beyond the free cores make every runtime's timing explode (torch eager's most)")
    # Busy: other processes' load and the timing's threads together needed more cores than there are
    # (load beside threads on cores of their own does not disturb the timing).
    busy = load.cores is not None and load.cores >= NOTICEABLE and load.cores + threads > default_threads() + NOTICEABLE
    base_ms = _median(samples["baseline"])
    report.baseline.speedup = {"value": 1.0, "ci95": [1.0, 1.0], "reference": "baseline", "ms": round(base_ms, 4),
                               "method": method}
    for entry in report.candidates:
        if entry.id not in samples:
            continue
        value, ci = paired_ratio(samples["baseline"], samples[entry.id])
        entry.speedup = {"value": round(value, 3), "ci95": [round(ci[0], 3), round(ci[1], 3)],
                         "reference": "baseline", "ms": round(_median(samples[entry.id]), 4),
                         "baseline_ms": round(base_ms, 4), "method": method, "threads": threads}
        ref = entry.float_reference
        if ref and ref != entry.id and ref in samples:
            v, c = paired_ratio(samples[ref], samples[entry.id])
            entry.speedup["vs_float"] = {"value": round(v, 3), "ci95": [round(c[0], 3), round(c[1], 3)],
                                         "reference": ref}
        if busy:
            entry.speedup["busy_cores"] = round(float(load.cores or 0.0), 2)
    # Timings this machine's load made unreliable do not overturn the choice; another objective than
    # latency was chosen on its own figure.
    if not busy and report.constraints.get("objective", "latency") == "latency":
        _choose_best(report)
    return {"method": method, "paired": sorted(samples), "other_load_cores": load.cores, "busy": busy}


def free_threads(threads: int, probe_s: float = 0.3) -> int:
    """``threads``, or fewer where other processes keep cores busy: on 2 cores beside one busy process,
    digits-resnet18 on torch eager timed 4.9 ms idle and 14 ms (p90 in the hundreds) on 2 threads, so
    the paired ratio read 40x (CI 26-200x) against 14x idle; on the one free core it read 18.4x busy and
    18.8x idle (BENCHMARKS.md, session 16). The timing runs on the cores left free, and says so."""
    with OtherLoad() as load:
        time.sleep(probe_s)
    if load.cores is None or load.cores < NOTICEABLE:
        return threads
    return max(1, min(threads, default_threads() - math.ceil(load.cores - NOTICEABLE)))


def _runner(entry: Entry, out: Path, task: Task, threads: int) -> Callable[[], object] | None:
    """``entry``'s artifact loaded again as :func:`slimkit.load` does (torch weights into the task's
    model), or None where it kept none or cannot be loaded (it keeps its unpaired timing)."""
    from slimkit.pipeline.load import load

    folder = artifact_folder(entry, out)
    if folder is None or not (folder / MANIFEST).is_file():
        return None
    try:
        deployed = load(folder, model=task.build_model(), threads=threads).deployed
    except Exception:  # noqa: BLE001 - any failure to load again leaves the entry on its own timing
        return None
    inputs = task.example_inputs
    return lambda: deployed.run(inputs)


def _median(rounds: list[list[float]]) -> float:
    return statistics.median(x for block in rounds for x in block)


def _faster(entry: Entry, report: Report) -> bool:
    """Faster than the baseline and than the unmodified model on its target: in turns with each where
    both were timed so, else on their own timings (a reference that could not be loaded again)."""
    if speedup_of(entry, report.baseline)[0] <= 1.0:
        return False
    ref = next((e for e in report.candidates if e.id == entry.float_reference), None)
    if ref is None or ref is entry:
        return True
    vs = (entry.speedup or {}).get("vs_float")
    return float(vs["value"]) > 1.0 if vs else entry.latency_ms < ref.latency_ms


def _choose_best(report: Report) -> None:
    """The best: the largest speed-up (paired where the entry was timed in turns) among candidates
    meeting the constraints that are faster than the baseline and than the unmodified model on their
    target. An entry that could not be loaded again competes with its own timing, not dropped."""
    floor = report.constraints.get("metric_floor")
    eligible = [c for c in report.candidates if c.meets_constraints
                and (floor is None or meets_floor(c.measurement.metric, floor)) and _faster(c, report)]
    old = report.best
    report.best = max(eligible, key=lambda c: speedup_of(c, report.baseline)[0]).id if eligible else None
    for c in report.candidates:  # the own-timing noise notes of entries no longer the best
        if c.id != report.best:
            c.notes[:] = [n for n in c.notes if not n.startswith("within timing noise of")]
    if old is not None and old != report.best:
        demoted = report.entry(old)
        why = ("no faster than the baseline and its unmodified model" if not _faster(demoted, report)
               else f"slower than {report.best}")
        demoted.notes.append(f"timed in turns, it was {why}: not the best")
    if report.best is None:
        return
    best = report.entry(report.best)
    if report.best != old:
        best.notes.append("best by its paired speed-up (timed in turns with the baseline and the references)"
                          + (f"; {old} led on the timings taken when each was measured" if old else ""))
    if best.speedup:
        best.notes[:] = [n for n in best.notes if not n.startswith("within timing noise of")]
        for name, part in (("the baseline", best.speedup), ("its unmodified model", best.speedup.get("vs_float"))):
            if part and float(part["ci95"][0]) <= 1.0:
                best.notes.append(f"within timing noise of {name} in turns: the 95% interval of the speed-up "
                                  f"({part['ci95'][0]:.2f}-{part['ci95'][1]:.2f}) reaches 1")
