"""What a one-call job returns: the report, with the run folder and the models it holds one call away."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from slimkit.report.schema import Entry, Report
from slimkit.targets.predictor import Predictor


@dataclass
class Result(Report):
    """A run's report (every field of :class:`Report`) and where it lives: ``best_entry``, the
    ``pareto`` set, and ``load()`` for any entry's deployed model.

    Example:
        >>> import tempfile, torch
        >>> import slimkit
        >>> r = slimkit.benchmark(torch.nn.Linear(4, 2), torch.randn(32, 4), targets=["onnxruntime"],
        ...                       out=tempfile.mkdtemp(), quick=True)
        >>> len(r.pareto) > 0, r.load("onnxruntime")(torch.zeros(2, 4)).shape
        (True, torch.Size([2, 2]))
    """

    out: Path | None = None
    original: nn.Module | None = None  # the model before any step: torch artifacts load into its copy

    @classmethod
    def of(cls, report: Report, out: Path, original: nn.Module | None = None) -> Result:
        fields = {f.name: getattr(report, f.name) for f in dataclasses.fields(Report)}
        return cls(**fields, out=out, original=original)

    @property
    def best_entry(self) -> Entry | None:
        """The best candidate (fastest meeting every constraint), or None when none did."""
        return self.entry(self.best) if self.best else None

    @property
    def pareto(self) -> list[Entry]:
        """The entries on the metric/latency Pareto front."""
        return [e for e in self.entries if e.pareto]

    def load(self, entry: str | None = None, *, target: str | None = None) -> Predictor:
        """The deployed model of ``entry`` (default: the best), called like the original model."""
        from slimkit.pipeline.load import load

        if self.out is None:
            raise ValueError("this result has no run folder")
        return load(self.out, entry=entry, model=self.original, target=target)
