"""The ``pfn`` command: ``pfn train``, ``pfn predict``, ``pfn export``, ``pfn ship``."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"train": "pfn.train", "predict": "pfn.predict_cli", "export": "export.cli",
                "ship": "export.ship"}
    if not argv or argv[0] not in commands:
        print("usage: pfn {train,predict,export,ship} [options]   (pfn COMMAND --help for more)",
              file=sys.stderr)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    import importlib

    module = importlib.import_module(commands[argv[0]])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
