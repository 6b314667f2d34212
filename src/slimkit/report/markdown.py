"""report.md: the same table the CLI prints, for reading in a browser or a pull request."""

from __future__ import annotations

from typing import Any

from slimkit.report._format import fmt_bytes, fmt_count, fmt_speedup
from slimkit.report._sections import Section, sections
from slimkit.report.schema import Entry, Report

COLUMNS = ["id", "target", "metric", "latency b1 ms (median, p90, 95% CI)", "speed-up (95% CI)",
           "throughput", "size", "params", "MACs", "RSS growth", "flags"]


def row(entry: Entry, baseline: Entry, best: str | None) -> list[str]:
    m = entry.measurement
    lat = m.latency
    flags = []
    if entry.id == best:
        flags.append("best")
    if entry.pareto:
        flags.append("pareto")
    if not entry.meets_constraints:
        kinds = [m.split(" ", 1)[0] for m in entry.missed]
        flags.append("misses " + "/".join(kinds) if kinds else "misses constraints")
    return [
        entry.id,
        entry.target,
        f"{m.metric:.4g}" if abs(m.metric) < 10 else f"{m.metric:.2f}",
        f"{lat.median:.3f} ({lat.p90:.3f}, {lat.ci95[0]:.3f}-{lat.ci95[1]:.3f})",
        fmt_speedup(entry, baseline) if entry is not baseline else "1.00x",
        f"{m.throughput:.1f}/s @b{m.throughput_batch}",
        fmt_bytes(m.size_bytes),
        fmt_count(entry.params),
        fmt_count(entry.macs),
        fmt_bytes(m.peak_memory_bytes),
        ", ".join(flags),
    ]


def cpu_note(env: dict[str, Any]) -> str:
    """The CPU flags int8 and bf16 speed depend on, for a report's Machine line.

    Example:
        >>> cpu_note({"cpu": {"flags": ["avx2", "fma"], "int8_dot_saturates": True}})
        ' (avx2 fma; int8 without VNNI)'
    """
    cpu = env.get("cpu", {})
    flags = " ".join(cpu.get("flags", []))
    vnni = {True: "int8 without VNNI", False: "int8 with VNNI/AMX"}.get(cpu.get("int8_dot_saturates"))
    parts = [p for p in (flags, vnni) if p]
    return f" ({'; '.join(parts)})" if parts else ""


def busy_note(report: Report) -> str | None:
    """A warning when latencies were timed on more threads than cores, or while other processes kept the
    CPUs busy, else None.

    Example:
        >>> from types import SimpleNamespace as NS
        >>> e = lambda cores: NS(measurement=NS(details={"other_load_cores": cores}))
        >>> busy_note(NS(entries=[e(0.0), e(1.2), e(0.1)]))[:60]
        '1 of 3 latencies were timed while other processes kept up to'
        >>> busy_note(NS(entries=[e(0.0)])) is None
        True
    """
    from slimkit.measure.load import NOTICEABLE

    notes = []
    env = getattr(report, "environment", None) or {}
    threads, cores = env.get("threads"), (env.get("cpu") or {}).get("cores")
    if isinstance(threads, int) and isinstance(cores, int) and threads > cores:
        # More threads than cores: each runtime's threads wait on the others, and not alike.
        notes.append(f"{threads} threads on {cores} cores: every runtime was oversubscribed, so its latencies "
                     f"and the speed-ups are not what this machine gives; use --threads {cores} or fewer")
    loads = [e.measurement.details.get("other_load_cores") for e in report.entries]
    busy = [x for x in loads if isinstance(x, (int, float)) and x >= NOTICEABLE]
    if busy:
        paired = [sp for e in report.entries if (sp := getattr(e, "speedup", None))]
        on_free = next((sp.get("threads") for sp in paired if "instead of" in str(sp.get("method", ""))), None)
        said = (f"those latencies are unreliable (load does not slow every runtime alike); the speed-ups were "
                f"timed in turns on the {on_free} free thread(s), so they hold for that many threads"
                if on_free else "those timings and the speed-ups built on them are unreliable (load does not slow "
                "every runtime alike)")
        notes.append(f"{len(busy)} of {len(loads)} latencies were timed while other processes kept up to "
                     f"{max(busy):.1f} cores busy: {said}; re-run on an idle machine for the figures at full width")
    return "; ".join(notes) or None


def to_markdown(report: Report) -> str:
    lines = [f"# slimkit report: {report.task}", "", f"Command: `{report.command}`", ""]
    env = report.environment
    lines.append(f"Machine: {env['cpu']['model']}, {env['cpu']['cores']} cores{cpu_note(env)}, "
                 f"{env['threads']} threads used; torch {env['versions']['torch']}.")
    lines += ["", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for entry in report.entries:
        lines.append("| " + " | ".join(row(entry, report.baseline, report.best)) + " |")
    lines.append("")
    lines.append(f"Metric: {report.baseline.measurement.metric_name} (higher is better). "
                 "Speed-up is against the baseline (torch eager) measured in the same run. RSS growth is "
                 "how much this process's resident memory grew while a model was loaded and evaluated: "
                 "models measured after others on the same runtime reuse its memory and show less.")
    if report.best:
        lines.append(f"Best: **{report.best}**.")
    else:
        lines.append("Best: none (no candidate met the constraints and beat the baseline).")
    busy = busy_note(report)
    if busy:
        lines.append(f"- **warning**: {busy}")
    for skip in report.skipped:
        lines.append(f"- skipped target `{skip['target']}`: {skip['reason']}")
    for entry in report.entries:
        for note in entry.notes:
            lines.append(f"- {entry.id}: {note}")
    for section in sections(report.extra):
        lines += _section(section)
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _section(section: Section) -> list[str]:
    out = ["", f"## {section.title}", ""] + [f"- {line}" for line in section.lines]
    if section.rows:
        out += ["", "| " + " | ".join(section.header) + " |", "|" + "---|" * len(section.header)]
        out += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in section.rows]
        if section.more:
            out.append(f"\n({section.more} more rows in report.json)")
    return out
