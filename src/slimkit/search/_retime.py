"""The search's last word on speed: the best model re-timed in turns with the baseline.

Each trial is timed when it runs and the baseline once, at the start. Over an hour's search the
machine's speed drifts (other processes, clocks), so the table's speed-ups divide timings taken
at different moments: a baseline timed while other work ran inflates every speed-up in the
table (BENCHMARKS.md has a search where it nearly doubled them). Timing the
best model, the unmodified model on the best's target and the baseline in turns, in one
process, gives ratios that hold whatever the machine does meanwhile.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from slimkit.core.task import Task
from slimkit.measure.latency import interleaved
from slimkit.measure.load import NOTICEABLE, OtherLoad
from slimkit.pipeline import fresh_dir
from slimkit.report.schema import Entry, Report
from slimkit.targets import Deployed, get_target, load_artifact

DRIFT = 0.10  # a re-timed ratio this far from the table's says the machine's speed changed


def _load(entry: Entry, out: Path, threads: int) -> Deployed | None:
    """``entry``'s artifact loaded again, or None for a torch model (only its recipe rebuilds it)."""
    if not entry.artifact or not (out / entry.artifact).exists():
        return None
    # A run folder written before artifacts had manifests: the report says the precision measured.
    return load_artifact(entry.target, out / entry.artifact, threads,
                         entry.measurement.details.get("inference_precision"))


def retime_best(report: Report, task: Task, out: Path, threads: int, *, quick: bool = False) -> dict[str, Any] | None:
    """Re-time ``report``'s best model interleaved with the baseline (and the unmodified model on the
    same target); adds a note to the best entry and returns the figures, or None where the best is
    a torch model (only its recipe could rebuild it) or has no artifact.
    """
    if report.best is None:
        return None
    best = report.entry(report.best)
    deployed = _load(best, out, threads)
    if deployed is None:
        return None
    inputs = task.example_inputs
    runners = {"best": lambda: deployed.run(inputs)}
    reference = None
    if best.float_reference and best.float_reference != best.id:
        reference = report.entry(best.float_reference)
        ref_deployed = _load(reference, out, threads)
        if ref_deployed is not None:
            runners["reference"] = lambda: ref_deployed.run(inputs)
    rounds, runs, block_ms = (3, 3, 5.0) if quick else (20, 10, 20.0)
    workdir = fresh_dir(out / ".retime")
    try:
        eager = get_target("torch").deploy(task.build_model(), inputs, workdir, threads)
        runners["baseline"] = lambda: eager.run(inputs)
        with OtherLoad() as load:
            lat = interleaved(runners, rounds=rounds, runs=runs, min_block_ms=block_ms)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    best_ms, base_ms = lat["best"].median, lat["baseline"].median
    speedup, in_table = base_ms / best_ms, report.baseline.latency_ms / best.latency_ms
    result: dict[str, Any] = {
        "method": f"interleaved, {rounds} rounds of blocks of >= {runs} runs and >= {block_ms:g} ms",
        "best": best.id,
        "best_ms": round(best_ms, 4), "baseline_ms": round(base_ms, 4),
        "speedup": round(speedup, 3), "speedup_in_table": round(in_table, 3), "other_load_cores": load.cores,
    }
    note = (f"re-timed at the end in turns with the baseline: {best_ms:.3f} ms vs torch eager {base_ms:.3f} ms "
            f"= {speedup:.2f}x")
    if "reference" in lat and reference is not None:
        vs_ref = lat["reference"].median / best_ms
        result.update(reference=reference.id, reference_ms=round(lat["reference"].median, 4),
                      vs_reference=round(vs_ref, 3))
        note += f", {vs_ref:.2f}x the unmodified model on {best.target}"
        if vs_ref <= 1.0:
            note += " (NOT faster than it in this re-timing)"
    busy = load.cores is not None and load.cores >= NOTICEABLE
    if busy:
        # Concurrent load does not slow every runtime alike (torch's OpenMP threads suffer most), so
        # interleaving does not rescue these ratios.
        note += (f"; other processes kept ~{load.cores:.1f} cores busy meanwhile, so this ratio is unreliable "
                 "too: re-time on an idle machine")
    elif quick:
        note += " (--quick: short timings, indicative only)"
    elif max(speedup / in_table, in_table / speedup) > 2.0:
        # Machines drift by tens of percent, not by multiples: a larger gap means one of the two
        # timings was disturbed (threads of another runtime, a burst of load) and neither is sound.
        note += (f"; the table says {in_table:.2f}x: timings this far apart mean one of them was disturbed, "
                 "so neither is reliable: re-time on an idle machine")
    elif abs(speedup / in_table - 1.0) > DRIFT:
        note += (f"; the table's {in_table:.2f}x divides timings taken at different moments (the baseline "
                 f"read {report.baseline.latency_ms:.3f} ms at the start): the machine's speed changed, "
                 "trust this figure")
    best.notes.append(note)
    return result
