"""The one console every command prints through (stderr for logs, stdout for results)."""

from __future__ import annotations

import sys

from rich.console import Console

# Log lines say the time and the message: the source line of the logging call (`_shared.py:43`) means
# nothing to a user.
console = Console(stderr=True, highlight=False, log_path=False)
# Redirected output has no width to fit; a wide table reads better in a log than a folded one.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 140)

# --json: commands print one JSON document on stdout (emit_json) and nothing else there.
json_mode = False


def set_output(*, quiet: bool = False, as_json: bool = False) -> None:
    """--quiet: no progress lines on stderr (errors are still said); --json: stdout holds only the
    JSON document a command emits."""
    global json_mode
    console.quiet = quiet
    out.quiet = as_json
    json_mode = as_json


def emit_json(document: object) -> None:
    """The command's result as one JSON document on stdout (under --json; a no-op otherwise)."""
    import json

    if json_mode:
        sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")
        sys.stdout.flush()
