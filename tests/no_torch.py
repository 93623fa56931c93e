"""Run code in a fresh interpreter where ``import torch`` fails, as on a plain install.

A ``sitecustomize.py`` on the subprocess's path puts a ``sys.meta_path`` finder first that
raises ImportError for torch and its submodules, so torch being installed here does not
matter: the code under test must not need it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLOCK_TORCH = """
import importlib.abc, sys

class _NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"{name} is blocked for this test")
        return None

sys.meta_path.insert(0, _NoTorch())
"""


def run_without_torch(tmp_path: Path, code: str | None = None, cli: list[str] | None = None
                      ) -> subprocess.CompletedProcess:
    """Run Python ``code``, or ``pfn CLI...`` (``python -m pfn.cli``), with torch blocked."""
    (tmp_path / "sitecustomize.py").write_text(BLOCK_TORCH)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}", "OMP_NUM_THREADS": "1"}
    env.pop("PFN_DEBUG", None)
    argv = ["-m", "pfn.cli", *cli] if cli is not None else ["-c", textwrap.dedent(code)]
    return subprocess.run([sys.executable, *argv], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
