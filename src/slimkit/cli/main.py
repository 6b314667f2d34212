"""Entry point: parse arguments, dispatch, print SlimkitErrors without a traceback."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Sequence

from slimkit.errors import SlimkitError, UsageError


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of printing usage and exiting itself."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message, hint=f"run `{self.prog} --help`")


def build_parser() -> argparse.ArgumentParser:
    from slimkit.cli import bench, demo, distill, env, listing, optimize, prune, quantize, train, tune

    parser = _Parser(prog="slimkit", description="Make models smaller and faster, with measurements.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    for module in (demo, bench, optimize, train, distill, quantize, prune, tune, env, listing):
        module.add_parser(sub)
    return parser


def _quiet_third_party() -> None:
    # Exporters and runtimes print progress and deprecation chatter a user cannot act on.
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    for name in ("torch.utils.cpp_extension", "torch.utils._pytree", "torch.onnx", "nncf", "transformers"):
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 runtime failure, 2 usage error)."""
    from slimkit.ui import console

    _quiet_third_party()
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.version:
            from slimkit import __version__

            print(__version__)
            return 0
        if args.command is None:
            parser.print_help()
            return 2
        return int(args.run(args) or 0)
    except SlimkitError as err:
        console.print(f"[bold red]error:[/] {err.message}")
        if err.hint:
            console.print(f"  [yellow]hint:[/] {err.hint}")
        return err.exit_code
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]")
        return 130


if __name__ == "__main__":
    sys.exit(main())
