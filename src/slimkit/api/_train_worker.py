"""Entry point of each torchrun process for ``slimkit train --nproc N`` (argument: JSON of fit_task's)."""

from __future__ import annotations

import json
import sys


def main() -> int:
    from slimkit.api.train import fit_task
    from slimkit.errors import SlimkitError
    from slimkit.train import distributed as D

    kwargs = json.loads(sys.argv[1])
    try:
        fit_task(kwargs.pop("task"), **kwargs)
    except SlimkitError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    finally:
        D.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
