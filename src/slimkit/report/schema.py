"""The one report format every measuring command writes (see docs/report-schema.md)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slimkit.measure.measure import Measurement

# 2: each entry's "speedup" (a paired ratio with its 95% interval); version 1 reports read as before.
SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)


@dataclass
class Entry:
    """One model on one target, with everything measured about it."""

    id: str
    recipe: list[dict[str, Any]]
    target: str
    measurement: Measurement
    params: int
    macs: int
    artifact: str | None
    pareto: bool = False
    meets_constraints: bool = True
    notes: list[str] = field(default_factory=list)
    # id of the unmodified model on the same target: a candidate slower than it is never the best.
    float_reference: str | None = None
    # The constraints this entry misses, each said with its numbers ("accuracy 92.10 below the floor 98.72").
    missed: list[str] = field(default_factory=list)
    # Timed in turns with the baseline (and its float reference): {"value", "ci95", "reference", "ms",
    # "vs_float": {...}, "method"}; None where it was not paired (its own timing is all there is).
    speedup: dict[str, Any] | None = None

    @property
    def latency_ms(self) -> float:
        return self.measurement.latency.median

    def to_dict(self) -> dict[str, Any]:
        m = self.measurement
        return {
            "id": self.id,
            "recipe": self.recipe,
            "target": self.target,
            "metric": {"name": m.metric_name, "value": round(m.metric, 6),
                       **{k: round(v, 6) for k, v in m.extras.items()}},
            "latency_ms": m.latency.to_dict(),
            "throughput": {"batch": m.throughput_batch, "items_per_s": round(m.throughput, 3)},
            "size_bytes": m.size_bytes,
            "params": self.params,
            "macs": self.macs,
            "peak_memory_bytes": m.peak_memory_bytes,
            "artifact": self.artifact,
            "pareto": self.pareto,
            "meets_constraints": self.meets_constraints,
            "details": m.details,
            "notes": self.notes,
            "float_reference": self.float_reference,
            "missed": self.missed,
            "speedup": self.speedup,
        }


    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Entry:
        """Rebuild an entry written by :meth:`to_dict` (e.g. a search trial read back from storage)."""
        from slimkit.measure.latency import Latency

        lat = d["latency_ms"]
        metric = dict(d["metric"])
        name, value = metric.pop("name"), metric.pop("value")
        m = Measurement(
            metric_name=name, metric=float(value), extras={k: float(v) for k, v in metric.items()},
            latency=Latency(int(lat["batch"]), float(lat["median"]), float(lat["p90"]),
                            (float(lat["ci95"][0]), float(lat["ci95"][1])), float(lat.get("mean", lat["median"])),
                            int(lat.get("runs", 0))),
            throughput_batch=int(d["throughput"]["batch"]), throughput=float(d["throughput"]["items_per_s"]),
            size_bytes=int(d["size_bytes"]), peak_memory_bytes=int(d["peak_memory_bytes"]),
            details=dict(d.get("details", {})),
        )
        return cls(d["id"], list(d["recipe"]), d["target"], m, int(d["params"]), int(d["macs"]), d.get("artifact"),
                   bool(d.get("pareto", False)), bool(d.get("meets_constraints", True)), list(d.get("notes", [])),
                   d.get("float_reference"), [str(x) for x in d.get("missed", [])], d.get("speedup"))


@dataclass
class Report:
    """Baseline (the unmodified model on torch eager), candidates, and the best candidate."""

    task: str
    command: str
    environment: dict[str, Any]
    baseline: Entry
    candidates: list[Entry] = field(default_factory=list)
    best: str | None = None
    constraints: dict[str, Any] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # command-specific sections (search, sensitivity...)
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    @property
    def entries(self) -> list[Entry]:
        return [self.baseline, *self.candidates]

    def entry(self, entry_id: str) -> Entry:
        return next(e for e in self.entries if e.id == entry_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "task": self.task,
            "command": self.command,
            "created": self.created,
            "environment": self.environment,
            "constraints": self.constraints,
            "baseline": self.baseline.to_dict(),
            "candidates": [c.to_dict() for c in self.candidates],
            "best": self.best,
            "skipped": self.skipped,
            **self.extra,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Report:
        """Rebuild a report written by :meth:`to_dict` (keys it does not know become ``extra``)."""
        known = {"schema_version", "task", "command", "created", "environment", "constraints", "baseline",
                 "candidates", "best", "skipped"}
        return cls(d["task"], d["command"], d["environment"], Entry.from_dict(d["baseline"]),
                   [Entry.from_dict(c) for c in d.get("candidates", [])], d.get("best"), d.get("constraints", {}),
                   d.get("skipped", []), {k: v for k, v in d.items() if k not in known}, d.get("created", ""))


def load_report(path: str | Path) -> dict[str, Any]:
    """Read a report.json (plain JSON, safe to load)."""
    data = json.loads(Path(path).read_text())
    if data.get("schema_version") not in READABLE_VERSIONS:
        from slimkit.errors import UsageError

        raise UsageError(f"{path} has schema_version {data.get('schema_version')}, expected one of "
                         f"{', '.join(map(str, READABLE_VERSIONS))}",
                         hint="re-run the command with this slimkit version")
    return data
