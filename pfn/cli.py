"""The ``pfn`` command: one subcommand per job, each with its own ``--help``.

``pfn train`` and ``pfn predict`` belong to this package. Other packages of the distribution
add commands through the entry-point group ``tabpfn_lite.commands`` (``pfn export`` and
``pfn ship`` come from ``export/``, declared in ``pyproject.toml``), so ``pfn`` never imports
the packages layered above it.

Every command reports a user error (a missing file, a bad value, a missing optional
dependency) as one line on stderr with exit status 2; ``PFN_DEBUG=1`` shows the traceback
instead. Output piped into a reader that stops early (``pfn predict ... | head``) ends
quietly with status 0.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

import pfn
from pfn.extras import MissingDependencyError, require

PLUGIN_GROUP = "tabpfn_lite.commands"
# pfn's own commands: name -> (module with main(argv), one line for `pfn --help`)
OWN_COMMANDS = {
    "train": ("pfn.train", "pretrain a network on a prior (needs the train extra)"),
    "predict": ("pfn.predict_cli", "predictions for a test CSV from a training CSV, no code, "
                "no training"),
}


class UsageError(Exception):
    """A problem with the user's files or arguments: reported in one line, exit status 2."""


class CommandParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``PROG: error: ... (see PROG --help)``)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def run_command(prog: str, main: Callable[[list[str]], int | None], argv: Sequence[str],
                user_errors: tuple[type[BaseException], ...] = ()) -> int:
    """Run ``main(argv)``: user errors as one line with status 2, a closed pipe as success.

    user_errors: exception types that mean the user's input was wrong for this command
    (beyond :class:`UsageError` and a missing optional dependency).
    """
    try:
        return int(main(list(argv)) or 0)
    except BrokenPipeError:  # before OSError, which it is
        # The reader closed stdout (e.g. `| head`): not an error. Point stdout at devnull so
        # that flushing it at exit does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (UsageError, MissingDependencyError, *user_errors) as err:
        if os.environ.get("PFN_DEBUG"):
            raise
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2


def plugin_commands() -> dict[str, str]:
    """Commands other packages add: name -> "module:function".

    From the installed distribution's entry points; in a checkout that is not installed
    (or installed from an older tree), from ``pyproject.toml`` beside the package.
    """
    found = {ep.name: ep.value for ep in entry_points(group=PLUGIN_GROUP)}
    if found:
        return found
    return dict(pfn.pyproject().get("project", {}).get("entry-points", {})
                .get(PLUGIN_GROUP, {}))


def _load(target: str) -> Callable[[list[str]], int | None]:
    module, _, func = target.partition(":")
    return getattr(importlib.import_module(module), func or "main")


def summary(doc: str | None) -> str:
    """A command module's one line: its docstring's first line, after ``pfn NAME``:."""
    first = (doc or "").strip().split("\n", 1)[0]
    if first.startswith("``pfn"):
        first = first.split(":", 1)[1]
    return first.strip().rstrip(".")


def _plugin_summary(target: str) -> str:
    try:
        return summary(importlib.import_module(target.partition(":")[0]).__doc__)
    except ImportError as err:
        return f"(unavailable: {err})"


def build_parser(plugins: dict[str, str]) -> CommandParser:
    lines = {name: text for name, (_, text) in OWN_COMMANDS.items()}
    lines.update({name: _plugin_summary(target) for name, target in plugins.items()})
    width = max(map(len, lines))
    parser = CommandParser(
        prog="pfn", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="tabpfn-lite: a prior-fitted network for small tables.\n\ncommands:\n" +
                    "\n".join(f"  {name:<{width}}  {text}" for name, text in lines.items()),
        epilog="'pfn COMMAND --help' describes a command's options. Errors print one line\n"
               "(exit status 2); PFN_DEBUG=1 shows the traceback.")
    parser.add_argument("--version", action="version", version=f"pfn {pfn.__version__}")
    parser.add_argument("command", nargs="?", metavar="COMMAND", help="one of the commands")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    plugins = {k: v for k, v in plugin_commands().items() if k not in OWN_COMMANDS}
    if not argv or argv[0].startswith("-"):  # -h, --version, or a usage error
        parser = build_parser(plugins)
        parser.parse_args(argv)
        parser.error("a command is required")  # e.g. `pfn` alone
    name, rest = argv[0], argv[1:]
    if name == "train":  # its own parser; a missing torch is one line before importing it
        return run_command("pfn train", _train, rest, user_errors=(OSError, ValueError))
    if name in OWN_COMMANDS:
        return _load(OWN_COMMANDS[name][0] + ":main")(rest)
    if name in plugins:
        return run_command(f"pfn {name}", _load(plugins[name]), rest)
    build_parser(plugins).error(f"unknown command {name!r} (choose from "
                                f"{', '.join([*OWN_COMMANDS, *plugins])})")
    return 2


def _train(argv: list[str]) -> int:
    require("torch", what="pfn train")
    return _load("pfn.train:main")(argv)


if __name__ == "__main__":
    raise SystemExit(main())
