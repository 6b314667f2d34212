"""Numbers as people read them in the report tables."""

from __future__ import annotations

from typing import Any


def fmt_bytes(n: int) -> str:
    """Human-readable bytes.

    Example:
        >>> fmt_bytes(44_700_000)
        '42.6 MiB'
    """
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def fmt_count(n: int) -> str:
    """Counts with an SI suffix.

    Example:
        >>> fmt_count(11_181_642)
        '11.18M'
    """
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.2f}{suffix}"
    return str(n)


def fmt_ratio(x: float) -> str:
    """A speed-up with two decimals, or three significant digits below 0.1 (never "0.00x").

    Example:
        >>> fmt_ratio(24.437), fmt_ratio(0.00334)
        ('24.44x', '0.00334x')
    """
    return f"{x:.2f}x" if x >= 0.1 else f"{x:.3g}x"


def speedup_of(entry: Any, baseline: Any) -> tuple[float, tuple[float, float] | None]:
    """An entry's speed-up over the baseline and its 95% interval: the paired ratio where it was timed
    in turns with the baseline, else its own median over the baseline's (no interval: unpaired)."""
    sp = getattr(entry, "speedup", None)
    if sp:
        return float(sp["value"]), (float(sp["ci95"][0]), float(sp["ci95"][1]))
    return baseline.latency_ms / entry.latency_ms, None


def fmt_speedup(entry: Any, baseline: Any) -> str:
    """"2.31x (2.24-2.40)" for a paired speed-up, "2.31x (unpaired)" for one from separate timings.

    Example:
        >>> from types import SimpleNamespace as E
        >>> fmt_speedup(E(speedup={"value": 2.31, "ci95": [2.24, 2.4]}), None)
        '2.31x (2.24-2.40)'
        >>> fmt_speedup(E(speedup=None, latency_ms=1.0), E(latency_ms=2.0))
        '2.00x (unpaired)'
    """
    value, ci = speedup_of(entry, baseline)
    if ci is None:
        return f"{fmt_ratio(value)} (unpaired)"
    return f"{fmt_ratio(value)} ({ci[0]:.2f}-{ci[1]:.2f})"
