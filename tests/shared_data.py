"""Where the shared real datasets are: ``$PFN_SHARED_DIR``, else ``../shared`` beside the
checkout (as benchmarks/real_data.py assumes). Tests that need them skip when absent."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("PFN_SHARED_DIR", ROOT.parent / "shared"))
DATASETS = SHARED / "datasets"
