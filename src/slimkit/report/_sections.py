"""What a run did beyond its table (search, pruning, quantization, sensitivity), as sections that
report.md and report.html render alike: a few sentences and at most one table each."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from slimkit.report._format import fmt_count

MAX_ROWS = 20  # longer tables (MiniLM has 36 weighted layers) show the first rows and a count


@dataclass
class Section:
    """A titled block: sentences, then an optional table (``more`` rows were left out)."""

    title: str
    lines: list[str] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    more: int = 0


def sections(extra: dict[str, Any]) -> list[Section]:
    """The sections for a report's ``extra`` entries, in reading order.

    Example:
        >>> s = sections({"sensitivity": [{"layer": "n1", "origin": "fc", "metric": 97.5, "drop": 1.5,
        ...                                "output_error": 0.02}]})
        >>> s[0].title, s[0].rows
        ('Per-layer sensitivity', [['fc (n1)', '97.5000', '+1.5000', '2.00e-02']])
    """
    out = []
    if extra.get("search"):
        out.append(_search(extra["search"]))
    if extra.get("pruning"):
        out.append(_pruning(extra["pruning"]))
    if extra.get("quantization"):
        out.append(_quantization(extra["quantization"]))
    if extra.get("sensitivity"):
        items = ((extra.get("quantization") or {}).get("details") or {}).get("sensitivity_items")
        out.append(_sensitivity(extra["sensitivity"], items))
    return out


def _plain(value: Any) -> str:
    """Lists without brackets and quotes, floats without 16 digits: 'onnxruntime, openvino', '0.333333'."""
    if isinstance(value, (list, tuple)):
        return ", ".join(_plain(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _limited(section: Section, rows: list[list[str]]) -> Section:
    section.rows, section.more = rows[:MAX_ROWS], max(0, len(rows) - MAX_ROWS)
    return section


def _search(s: dict[str, Any]) -> Section:
    sec = Section("Search")
    failed, stopped = s.get("trials_failed") or [], s.get("trials_stopped_early") or []
    repeats = f", {s['trials_repeated']} re-proposals of measured points answered from the study" \
        if s.get("trials_repeated") else ""
    early = f", {len(stopped)} stopped early by the pruner" if stopped else ""
    skipped = s.get("points_skipped") or []
    if skipped:
        whys = sorted({str(p["why"]) for p in skipped})
        early += (f", {len(skipped)} point(s) skipped at no cost: {'; '.join(whys[:3])}"
                  + (f" and {len(whys) - 3} more reasons" if len(whys) > 3 else ""))
    if s.get("trials_interrupted"):
        early += f", {s['trials_interrupted']} interrupted (their points run again on --resume)"
    sec.lines.append(f"Sampler {s.get('sampler')}, pruner {s.get('pruner')}, {s.get('workers', 1)} worker(s): "
                     f"{s.get('trials_finished')} trials measured{repeats}{early}, {len(failed)} failed, "
                     f"{s.get('seconds')} s.")
    if s.get("partial"):
        sec.lines.insert(0, "**Partial**: the search was stopped before its budget was spent; this report shows "
                            "the trials that finished. `slimkit optimize --resume` with the same --out continues it.")
    for st in stopped[:MAX_ROWS]:
        sec.lines.append(f"Trial {st['trial']} {st['why']}.")
    space = {k: v for k, v in (s.get("space") or {}).items() if v not in (None, [], [False], "")}
    if space:
        sec.lines.append("Space: " + "; ".join(f"{k} {_plain(v)}" for k, v in space.items()) + ".")
    if s.get("closest"):
        sec.lines.append(f"No model met the constraints. Closest: {s['closest']['id']}: {s['closest']['missed']}.")
    r = s.get("retimed")
    if r:
        sec.lines.append(
            f"Re-timed at the end ({r['method']}): {r['best']} {r['best_ms']} ms against the baseline "
            f"{r['baseline_ms']} ms = {r['speedup']}x (table: {r['speedup_in_table']}x)"
            + (f"; {r['vs_reference']}x the unmodified model on its target ({r['reference']}, {r['reference_ms']} ms)"
               if r.get("reference") else "")
            + f"; other processes' load {r.get('other_load_cores', 0)} cores.")
    if s.get("best_artifact"):
        sec.lines.append(f"Best model's deployable artifact: `{s['best_artifact']}`.")
    if failed:
        sec.header = ["failed trial", "error"]
        _limited(sec, [[str(f["trial"]), str(f["error"])] for f in failed])
    return sec


_SETTINGS = ("ratio", "head_ratio", "ffn_ratio", "criterion", "scope", "round_to", "pattern", "schedule", "target_macs")


def _pruning(p: dict[str, Any]) -> Section:
    cfg = (p.get("config") or {}).get("data", {})
    how = p.get("mode", "?") + (f", {p['method']}" if p.get("method") else "")
    settings = ", ".join(f"{k} {_plain(cfg[k])}" for k in _SETTINGS if cfg.get(k) not in (None, "none", "oneshot"))
    sec = Section("Pruning", [f"{how}: {settings}."])
    macs, params = p.get("macs_before_after") or [], p.get("params_before_after") or []
    if len(macs) == 2 and len(params) == 2:
        fewer = p.get("macs_reduction") or 0.0
        sec.lines.append(f"MACs {fmt_count(macs[0])} -> {fmt_count(macs[1])} ({fewer:.2f}x fewer); "
                         f"parameters {fmt_count(params[0])} -> {fmt_count(params[1])}"
                         + (f"; {p['sparsity']:.1%} of weights zero." if p.get("sparsity") is not None else "."))
    after, recovered = p.get("metric_after_prune_before_recovery"), p.get("metric_after_recovery")
    if after is not None:
        rec = p.get("recovery") or {}
        sec.lines.append(f"Metric right after pruning {after:.4f}" + (
            f", after recovery {recovered:.4f} ({cfg.get('recover', '')}, {rec.get('epochs')} epoch(s)"
            f"{', stopped early' if rec.get('stopped_early') else ''})." if recovered is not None else "."))
    if p.get("note"):
        sec.lines.append(p["note"] + ".")
    if p.get("chosen_ratios"):
        sec.lines.append("Per-layer ratios chosen for the MAC target: "
                         + ", ".join(f"{k} {v}" for k, v in p["chosen_ratios"].items()) + ".")
    layers, heads = p.get("layers") or {}, p.get("heads") or {}
    if heads:
        sec.header = ["layer", "heads", "FFN neurons"]
        return _limited(sec, [[n, f"{h[0]} -> {h[1]}", f"{h[2]} -> {h[3]}"] for n, h in heads.items()])
    if p.get("mode") == "unstructured":
        sec.header = ["layer", "sparsity"]
        return _limited(sec, [[n, f"{v:.1%}"] for n, v in layers.items()])
    sec.header = ["layer", "width before", "after", "removed"]
    return _limited(sec, [[n, str(w[0]), str(w[1]), f"{1 - w[1] / max(w[0], 1):.0%}"] for n, w in layers.items()])


def _quantization(q: dict[str, Any]) -> Section:
    d = q.get("details") or {}
    facts = [f"{k} {d[k]}" for k in ("calibration", "samples", "format", "weight_bits", "group_size", "per_channel")
             if d.get(k) not in (None, "")]
    used = d.get("group_sizes_used")
    if used and used != [d.get("group_size")]:
        facts.append(f"group sizes used {', '.join(map(str, used))} (a width the asked size does not divide gets "
                     "a smaller one)")
    sec = Section("Quantization", [f"{q.get('scheme')} on {q.get('target')} ({q.get('engine')})"
                                   + (": " + ", ".join(facts) if facts else "") + "."])
    modules = d.get("float_layer_modules") or {}
    floats = q.get("float_layers") or []
    if floats:
        named = [f"{modules[n]} ({n})" if modules.get(n) else n for n in floats]
        sec.lines.append(f"{len(floats)} layer(s) kept in float: " + ", ".join(named[:MAX_ROWS])
                         + (f", {len(named) - MAX_ROWS} more" if len(named) > MAX_ROWS else "") + ".")
    aa = d.get("accuracy_aware")
    if aa:
        tried = ", ".join(f"{t['float_layers']} float: {t['metric']:.4f}" for t in aa.get("trials", []))
        sec.lines.append(f"Accuracy-aware mode, max drop {aa.get('max_drop')}: "
                         f"{'met' if aa.get('met') else 'not met'} (tried {tried}).")
    return sec


def _sensitivity(rows: list[dict[str, Any]], items: int | None = None) -> Section:
    on = f" on the first {items} evaluation items (not the whole set the table above uses)" if items else ""
    sec = Section("Per-layer sensitivity", [f"Metric{on} with only that layer quantized (most sensitive first); "
                                            "1-cos is the output's cosine distance to the float model."],
                  ["layer", "metric", "drop", "1-cos"])
    ranked = sorted(rows, key=lambda r: (-(r.get("drop") or 0.0), -(r.get("output_error") or 0.0)))
    return _limited(sec, [[f"{r['origin']} ({r['layer']})" if r.get("origin") else str(r["layer"]),
                           f"{r['metric']:.4f}", f"{r['drop']:+.4f}", f"{r['output_error']:.2e}"] for r in ranked])
