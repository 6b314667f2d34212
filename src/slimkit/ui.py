"""The one console every command prints through (stderr for logs, stdout for results)."""

from __future__ import annotations

import sys

from rich.console import Console

# Log lines say the time and the message: the source line of the logging call (`_shared.py:43`) means
# nothing to a user.
console = Console(stderr=True, highlight=False, log_path=False)
# Redirected output has no width to fit; a wide table reads better in a log than a folded one.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 140)
