"""The ``activezarr`` command: parse arguments, call the library, print; errors are one line.

One module per command group (``index``, ``info``/``versions``, ``reduce``, ``demo``,
``catalog ...``, ``combine``); each registers its subcommands here. Nothing imports the CLI.
Every error ends as one line on stderr and exit status 1 (2 for a malformed command line).
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import warnings

from .. import __version__
from ..errors import one_line
from . import catalog, combine, demo, index, info, reduce
from ._common import FORMATTER, fail, flushed, os_error, run, usable_streams, verbose_parent
from ._inputs import join_negative_values


class CommandLineError(Exception):
    """argparse found the command line malformed (exit status 2)."""


class Parser(argparse.ArgumentParser):
    """argparse's parser, whose errors return to ``main`` instead of exiting, so that
    ``--json`` gets its JSON error object then too."""

    def error(self, message: str):
        command = self.prog.removeprefix("activezarr").strip()
        option = re.match(r"argument (--[\w-]+)(/-\w)?: expected one argument$", message)
        if option:  # "--select --1": a value that looks like an option
            message += f" (for a value that starts with -, write {option[1]}=VALUE)"
        hint = f"; see `{self.prog} -h`"
        raise CommandLineError(f"{command}: {message}{hint}" if command else message + hint)

    def _print_message(self, message: str, file=None) -> None:
        """argparse's, without swallowing the error when --help cannot be written (a full
        disk): ``main`` reports it and exits 1 instead of 0."""
        if message:
            (file or sys.stderr).write(message)


EPILOG = """\
examples:
  activezarr demo                                        # a sample file, indexed and reduced
  activezarr index data/*.nc                             # indexes/<name>.json + the catalog
  activezarr info indexes/tas.json tas                   # shape, chunks, units, time range
  activezarr reduce indexes/tas.json tas --op mean --select "0:12,:,10:20"

`activezarr COMMAND -h` shows each command's options and examples."""


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="activezarr",
        description="Index netCDF4/HDF5 files once, then reduce them where the data lives.",
        epilog=EPILOG,
        formatter_class=FORMATTER,
    )
    p.add_argument(
        "-v", "--verbose", action="store_true", help="log progress and details (default: off)"
    )
    p.add_argument(
        "--version",
        action="version",
        version=f"activezarr {__version__}",
        help="print the version and exit (`activezarr versions` for bug reports)",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parents = [verbose_parent()]
    index.register(sub, parents)
    info.register(sub, parents)
    reduce.register(sub, parents)
    demo.register(sub, parents)
    catalog.register(sub, parents)
    combine.register(sub, parents)
    info.register_versions(sub, parents)
    return p


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Python warnings (a CF attribute netCDF4 would not apply, say) as one stderr line each,
    without the source line Python's default shows."""
    # a warning is prose (netCDF4 breaks its lines): its line breaks are spaces
    text = one_line(" ".join(str(message).split())).removeprefix("WARNING: ")
    print(f"activezarr: warning: {text}", file=file or sys.stderr)


def _parse(parser: Parser, argv: list[str]) -> argparse.Namespace:
    """``parse_args``, except that FACET=VALUE terms may come anywhere among the options
    (argparse takes a positional list only once: ``ls a=1 --path X b=2`` would leave b=2)."""
    dashes = next((a for a in argv if a.startswith("--") and a.endswith("=--")), None)
    if dashes:  # argparse would drop the "--" and set the option to an empty list
        parser.error(f"argument {dashes[:-3]}: expected one argument, not --")
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "terms") and all("=" in e and not e.startswith("-") for e in extra):
        args.terms = [*(args.terms or ()), *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}{_elsewhere(parser, extra)}")
    return args


def _elsewhere(parser: argparse.ArgumentParser, extra: list[str]) -> str:
    """`` (--scheduler is an option of `activezarr index`)`` for an unknown option that
    another command takes; empty otherwise."""
    for arg in extra:
        option = arg.split("=", 1)[0]
        if not option.startswith("--"):
            continue
        owners = sorted(_commands_taking(parser, option, "activezarr"))
        if owners:
            return f" ({option} is an option of {' and '.join(f'`{o}`' for o in owners)})"
    return ""


def _commands_taking(parser: argparse.ArgumentParser, option: str, prefix: str) -> set[str]:
    """The (sub)commands, by full name, whose own options include ``option``."""
    found = set()
    for action in parser._actions:  # argparse has no public walk of its subcommands
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if option in sub._option_string_actions:
                    found.add(f"{prefix} {name}")
                found |= _commands_taking(sub, option, f"{prefix} {name}")
    return found


def main(argv: list[str] | None = None) -> int:
    """Run ``activezarr`` with ``argv`` (default: the process's arguments); return the exit code."""
    usable_streams()
    argv = join_negative_values(list(sys.argv[1:] if argv is None else argv))
    try:
        args = _parse(build_parser(), argv)
    except CommandLineError as exc:
        return fail(str(exc), 2, "--json" in argv)
    except SystemExit as exc:  # argparse: --help or --version (0), already printed
        return flushed(int(exc.code or 0) if not isinstance(exc.code, str) else 2, False)
    except OSError as exc:  # --help into a closed stdout or onto a full disk
        return fail(os_error(exc, None), 1, False)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s: %(message)s",
    )
    warnings.showwarning = _one_line_warning
    return flushed(run(args.func, args), bool(getattr(args, "json", False)))


if __name__ == "__main__":
    sys.exit(main())
