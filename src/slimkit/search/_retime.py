"""The search's last word on speed: its leading models timed in turns with the baseline.

Each trial is timed when it runs and the baseline once, at the start. Over an hour's search the
machine's speed drifts (other processes, clocks), so a ratio of those timings divides numbers taken
at different moments: a baseline timed while other work ran inflates every speed-up (BENCHMARKS.md
has a search where it nearly doubled them). The leading candidates, their references and the
baseline are timed in interleaved rounds (:func:`slimkit.pipeline.paired.pair_speedups`), the best is
chosen by those paired ratios, and this module says what that re-timing found about the best.
"""

from __future__ import annotations

from typing import Any

from slimkit.report.schema import Report

DRIFT = 0.10  # a paired ratio this far from the one of separate timings says the machine's speed changed


def describe_pairing(report: Report, pairing: dict[str, Any] | None, *, quick: bool = False) -> dict[str, Any] | None:
    """The best's paired figures as the report's ``search.retimed`` section, with a note on the best
    entry when they disagree with its own timing; None where the best was not paired."""
    if report.best is None or pairing is None:
        return None
    best = report.entry(report.best)
    sp = best.speedup
    if not sp:
        return None
    speedup, in_table = float(sp["value"]), report.baseline.latency_ms / best.latency_ms
    result: dict[str, Any] = {
        "method": sp["method"], "best": best.id, "best_ms": sp["ms"], "baseline_ms": sp["baseline_ms"],
        "speedup": speedup, "ci95": sp["ci95"], "speedup_in_table": round(in_table, 3),
        "other_load_cores": pairing.get("other_load_cores"),
    }
    note = (f"timed in turns with the baseline: {sp['ms']:.3f} ms vs torch eager {sp['baseline_ms']:.3f} ms "
            f"= {speedup:.2f}x (95% CI {sp['ci95'][0]:.2f}-{sp['ci95'][1]:.2f})")
    vs = sp.get("vs_float")
    if vs:
        ref = report.entry(vs["reference"])
        ref_ms = ref.speedup["ms"] if ref.speedup else ref.latency_ms
        result.update(reference=ref.id, reference_ms=ref_ms, vs_reference=vs["value"])
        note += f", {vs['value']:.2f}x the unmodified model on {best.target}"
    if pairing.get("busy"):
        # Concurrent load does not slow every runtime alike (torch's OpenMP threads suffer most), so
        # interleaving does not rescue these ratios.
        note += (f"; other processes kept ~{pairing['other_load_cores']:.1f} cores busy meanwhile, so this ratio is "
                 "unreliable too: re-time on an idle machine")
    elif quick:
        note += " (--quick: short timings, indicative only)"
    elif max(speedup / in_table, in_table / speedup) > 2.0:
        # Machines drift by tens of percent, not by multiples: a larger gap means the separate timings
        # were disturbed (threads of another runtime, a burst of load).
        note += (f"; its own timing against the baseline's at the start said {in_table:.2f}x: timings this far "
                 "apart mean one of those was disturbed")
    elif abs(speedup / in_table - 1.0) > DRIFT:
        note += (f"; its own timing against the baseline's at the start said {in_table:.2f}x (the baseline "
                 f"read {report.baseline.latency_ms:.3f} ms then): the machine's speed changed, trust this figure")
    best.notes.append(note)
    return result
