"""Numbers as people read them in the report tables."""

from __future__ import annotations


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
