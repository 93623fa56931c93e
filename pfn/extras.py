"""Optional dependencies: which install extra provides them, and one clear error without.

The plain install (``pip install tabpfn-lite``) predicts with ONNX Runtime and never needs
PyTorch; pretraining, the torch engine (and so a CUDA device), ``pfn export`` and ``pfn ship``
do. They call :func:`require` first, so a missing extra is one line that says what to
install instead of a ``ModuleNotFoundError`` from deep inside.
"""

from __future__ import annotations

import importlib.util

# module -> the extra that installs it (pyproject.toml, [project.optional-dependencies])
EXTRA_OF = {"torch": "train", "onnx": "train", "onnxscript": "train", "ray": "ray"}


class MissingDependencyError(ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or blocked package counts as missing
        return False


def require(*modules: str, what: str) -> None:
    """Raise :class:`MissingDependencyError` unless every module in ``modules`` imports.

    what: the feature that needs them, for the message ("engine='torch'", "pfn export").
    """
    missing = [m for m in modules if not _installed(m)]
    if missing:
        extras = sorted({EXTRA_OF.get(m, "train") for m in missing})
        spec = f"tabpfn-lite[{','.join(extras)}]"
        raise MissingDependencyError(
            f"{what} needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
            f"not installed: pip install '{spec}'")


__all__ = ["MissingDependencyError", "require", "EXTRA_OF"]
