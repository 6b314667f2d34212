"""The one console every command prints through (stderr for logs, stdout for results)."""

from __future__ import annotations

import sys

from rich.console import Console

console = Console(stderr=True, highlight=False)
# Redirected output has no width to fit; a wide table reads better in a log than a folded one.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 140)
