"""Entry point: parse arguments, dispatch, print SlimkitErrors without a traceback."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from slimkit.errors import FolderInUseError, SlimkitError, UsageError, first_line, resource_error


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of printing usage and exiting itself."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, hint=f"run `{self.prog} --help`")

    # Narrower than argparse's overloads (no custom namespace class): nothing here passes one.
    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:  # argparse reports these from the top parser, so its hint named `slimkit --help`
            command = getattr(parsed, "command", None)
            raise UsageError(f"unrecognized arguments: {' '.join(extra)}",
                             hint=f"run `{self.prog}{' ' + command if command else ''} --help`")
        return parsed


def build_parser() -> argparse.ArgumentParser:
    from slimkit.cli import bench, demo, distill, env, listing, optimize, predict, prune, quantize, run, train, tune

    parser = _Parser(prog="slimkit", description="Make models smaller and faster, with measurements.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    for module in (demo, bench, optimize, run, predict, train, distill, quantize, prune, tune, env, listing):
        module.add_parser(sub)
    for command in sub.choices.values():
        options = {o for a in command._actions for o in a.option_strings}
        if "--quiet" not in options:
            command.add_argument("--quiet", action="store_true", help="no progress lines (errors are still said)")
        if "--json" not in options:
            command.add_argument("--json", action="store_true",
                                 help="print one JSON document on stdout (best, paired speed-ups, paths) instead "
                                      "of tables")
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


def _make_out(out: str) -> Path | None:
    """Create the run folder up front, so that an unusable ``--out`` is one clear error before any
    work; returns the outermost folder this run created for it (None when it existed)."""
    from slimkit.pipeline.folder import first_missing

    path = Path(out)
    if path.exists() and not path.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder", hint="choose a folder path for --out")
    created = first_missing(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".slimkit-write-check"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise UsageError(f"cannot write the run folder {out}: {exc.strerror or exc}",
                         hint="choose a writable folder for --out") from None
    return created


def _as_slimkit_error(exc: Exception) -> SlimkitError:
    """Any failure as one a person can read: a resource (disk, memory) named as such; anything else
    is slimkit's own bug, said in one line (the traceback with SLIMKIT_DEBUG=1)."""
    if isinstance(exc, SlimkitError):
        return exc
    if (resource := resource_error(exc)) is not None:
        return resource
    if os.environ.get("SLIMKIT_DEBUG"):
        traceback.print_exception(exc)
    return SlimkitError(f"internal error: {type(exc).__name__}: {first_line(exc)}",
                        hint="this is a slimkit bug: run again with SLIMKIT_DEBUG=1 for the traceback "
                             "and report it with that and the command")


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
        from slimkit.ui import set_output

        set_output(quiet=bool(getattr(args, "quiet", False)), as_json=bool(getattr(args, "json", False))
                   and args.command not in ("env", "predict"))  # env's --json is its own; predict writes JSON lines
        out: str | None = getattr(args, "out", None)
        created = _make_out(out) if out else None
        try:
            return int(args.run(args) or 0)
        except Exception as exc:
            from slimkit.pipeline.folder import remove_made, worth_keeping

            err = _as_slimkit_error(exc)
            # A run refused for its input (usage errors, inputs the model rejects: exit 2), or one that
            # failed before leaving a report or a state to resume from, leaves no folder behind, nor
            # the parent folders made for it; there is nothing of value in it. A folder another
            # process works in is never touched.
            if out and created is not None and not isinstance(err, FolderInUseError) \
                    and (err.exit_code == 2 or not worth_keeping(Path(out))):
                remove_made(Path(out), created)
            if err is exc:
                raise
            raise err from exc
    except SlimkitError as err:
        from rich.markup import escape

        console.quiet = False  # --quiet silences progress, never the error
        # Messages quote user values and YAML ("add optimizer: [sgd]"): not rich markup to swallow.
        console.print(f"[bold red]error:[/] {escape(err.message)}")
        if err.hint:
            console.print(f"  [yellow]hint:[/] {escape(err.hint)}")
        return err.exit_code
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]")
        return 130


if __name__ == "__main__":
    sys.exit(main())
