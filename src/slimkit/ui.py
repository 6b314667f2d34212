"""The one console every command prints through (stderr for logs, stdout for results)."""

from __future__ import annotations

from rich.console import Console

console = Console(stderr=True, highlight=False)
out = Console(highlight=False)
