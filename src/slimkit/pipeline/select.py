"""Selection: constraints, Pareto fronts, and the best candidate (never slower than its references)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from slimkit.report.schema import Entry, Report


def pareto_ids(entries: Sequence[Entry], cost: Callable[[Entry], float]) -> list[str]:
    """Ids on the front of metric (higher is better) against ``cost`` (lower is better)."""

    def dominates(o: Entry, e: Entry) -> bool:
        mo, me = o.measurement.metric, e.measurement.metric
        return mo >= me and cost(o) <= cost(e) and (mo > me or cost(o) < cost(e))

    return [e.id for e in entries if not any(o is not e and dominates(o, e) for o in entries)]


# What the best is chosen for: the value to improve on the baseline (lower is better unless noted).
OBJECTIVES = {"latency": "batch-1 latency", "size": "size on disk", "throughput": "items per second (higher)",
              "memory": "peak memory while loaded and evaluated"}


def objective_value(entry: Entry, objective: str) -> float:
    """The entry's figure for ``objective``, oriented so that lower is better."""
    m = entry.measurement
    return {"latency": entry.latency_ms, "size": float(m.size_bytes), "throughput": -m.throughput,
            "memory": float(m.peak_memory_bytes)}[objective]


def check_objective(objective: object) -> str:
    """``objective`` if slimkit knows it, else a UsageError naming the ones it does."""
    from slimkit.errors import UsageError, shown

    if objective not in OBJECTIVES:
        raise UsageError(f"unknown objective {shown(objective)}", hint=f"choose one of: {', '.join(OBJECTIVES)}")
    return str(objective)


def finalize(report: Report, max_drop: float, latency_budget: float | None = None,
             size_budget: int | None = None, objective: str = "latency") -> Report:
    """Mark constraints and the metric-vs-latency Pareto front; pick the best candidate.

    The best meets every constraint and improves on the baseline in ``objective``: for latency, the
    fastest candidate faster than the baseline and than its target's unmodified model (never a slower
    model); for size, memory or throughput, the one best in that figure (a 3.5x smaller int8 model a
    little slower than float is the answer when size was asked for).
    """
    base = report.baseline
    floor = base.measurement.metric - max_drop
    report.constraints = {"max_drop": max_drop, "metric_floor": floor,
                          "latency_budget_ms": latency_budget, "size_budget_bytes": size_budget,
                          "objective": objective}
    for e in report.entries:
        e.missed = missed(e, floor, latency_budget, size_budget)
        e.meets_constraints = not e.missed
    front = set(pareto_ids(report.entries, lambda e: e.latency_ms))
    for e in report.entries:
        e.pareto = e.id in front
    by_id = {e.id: e for e in report.entries}
    eligible = []
    for c in report.candidates:
        slower_than = [base]
        ref = by_id.get(c.float_reference) if c.float_reference else None
        if ref is not None and ref is not c:
            slower_than.append(ref)
        too_slow = [r for r in slower_than if c.latency_ms >= r.latency_ms]
        for r in too_slow:
            what = "the baseline" if r is base else f"the unmodified model on {r.target} ({r.id})"
            digits = next((d for d in (3, 4, 5, 6) if f"{c.latency_ms:.{d}f}" != f"{r.latency_ms:.{d}f}"), 6)
            note = (f"{'slower than' if c.latency_ms > r.latency_ms else 'no faster than'} {what} "
                    f"({c.latency_ms:.{digits}f} ms vs {r.latency_ms:.{digits}f} ms): never reported as best")
            if note not in c.notes:
                c.notes.append(note)
        if c.meets_constraints and not too_slow:
            eligible.append(c)
    report.best = min(eligible, key=lambda c: c.latency_ms).id if eligible else None
    if objective != "latency":
        better = [c for c in report.candidates if c.meets_constraints
                  and objective_value(c, objective) < objective_value(base, objective)]
        report.best = min(better, key=lambda c: objective_value(c, objective)).id if better else None
        return report
    if report.best:
        best = by_id[report.best]
        ref = by_id.get(best.float_reference) if best.float_reference else None
        for r in [x for x in (base, ref) if x is not None and x is not best]:
            # Picked on the medians; where the 95% intervals overlap the gain may be noise (a model
            # identical to the baseline was "best" at 1.01x): say so instead of implying a speed-up.
            if best.measurement.latency.ci95[1] >= r.measurement.latency.ci95[0]:
                note = (f"within timing noise of {r.id}: the 95% intervals of the medians overlap "
                        f"({_ci(best)} vs {_ci(r)})")
                if note not in best.notes:
                    best.notes.append(note)
    return report


def missed(entry: Entry, floor: float, latency_budget: float | None = None,
           size_budget: int | None = None) -> list[str]:
    """The constraints ``entry`` misses, each with its numbers; the first word names the constraint.

    Example:
        >>> from slimkit.measure.latency import Latency
        >>> from slimkit.measure.measure import Measurement
        >>> m = Measurement("accuracy", 92.1, {}, Latency(1, 3.2, 3.5, (3.1, 3.3), 3.2, 5), 1, 10.0, 2**20, 0)
        >>> missed(Entry("x", [], "torch", m, 0, 0, None), 98.72, latency_budget=2.0)
        ['accuracy 92.10 below the floor 98.72', 'latency 3.200 ms over the budget 2 ms']
    """
    m = entry.measurement
    out = []
    if not meets_floor(m.metric, floor):
        out.append(f"{m.metric_name} {m.metric:.4g} below the floor {floor:.4g}" if abs(floor) < 10 else
                   f"{m.metric_name} {m.metric:.2f} below the floor {floor:.2f}")
    if latency_budget is not None and m.latency.median > latency_budget:
        out.append(f"latency {m.latency.median:.3f} ms over the budget {latency_budget:g} ms")
    if size_budget is not None and m.size_bytes > size_budget:
        out.append(f"size {m.size_bytes / 2**20:.2f} MiB over the budget {size_budget / 2**20:.2f} MiB")
    return out


def _ci(e: Entry) -> str:
    low, high = e.measurement.latency.ci95
    return f"{low:.3f}-{high:.3f} ms"

def meets_floor(metric: float, floor: float) -> bool:
    """``metric >= floor`` up to the rounding of metrics computed in float32: 341/360 correct is
    94.722223 there, against a floor of 94.722224 from a drop of exactly 5 points.

    Example:
        >>> meets_floor(94.722223, 94.722224), meets_floor(94.70, 94.72)
        (True, False)
    """
    return metric >= floor - 1e-6 * max(1.0, abs(floor))


