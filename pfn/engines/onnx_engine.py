"""ONNX Runtime engine for the exported graphs: numpy + onnxruntime only, never torch.

The engine is the ONNX twin of the torch engine the estimators use. Where the fit/predict
graph pair exists (``pfn export`` writes it), ``fit`` runs the fit graph once and keeps its
outputs (the training rows' per-layer keys and values, as the torch engine's cache does),
and every ``predict`` runs only the test rows through the predict graph: fit once, predict
many. For a prefix with only the full graphs (an older or hand-made export), ``fit``
validates and stores the training rows and ``predict`` runs the full graph. Everything else
(label encoding, categorical coding, ensemble transforms) happens before, in
``pfn.preprocessing``, identically for both engines; see ``export/FORMAT.md``.

Shapes: B datasets, N training rows, T test rows, F features.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from pfn.artifacts import DEFAULT_PREFIX, KINDS, TASKS, check_task, graph_path, onnx_prefix

SCORES_BUDGET = 1 << 22  # attention-score floats per ONNX Runtime call (16 MB)


@dataclass(frozen=True)
class OnnxContext:
    """What ``fit`` computed for a batch of B datasets with N training rows and F features.

    ``cache``: the fit graph's outputs by name (keys/values, feature statistics, class
    counts or bucket borders), when the engine has the fit/predict pair; otherwise
    ``x_train`` (B, N, F) and ``y_train`` (B, N), float32, for the full graph.
    """

    task: str
    shape: tuple[int, int, int]
    cache: dict[str, np.ndarray] | None = None
    x_train: np.ndarray | None = None
    y_train: np.ndarray | None = None


def _as_float32(name: str, value, ndim: int) -> np.ndarray:
    """Real numeric array-like -> C-contiguous float32 of rank ``ndim``; reject the rest."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiub":  # float, signed/unsigned int, bool
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float32)


class OnnxEngine:
    """Runs the graphs ``<prefix>.TASK[.fit|.predict].onnx`` (sessions created lazily).

    model_path: the prefix (or the path of one of its graphs); by default the shipped
    ``pfn/weights/default``.
    intra_op_threads: ONNX Runtime threads per operator, by default all cores.
    memory_arena: keep ONNX Runtime's CPU memory arena (on by default): faster repeated
    calls, but the arena keeps its buffers allocated between calls, so pass False where
    memory matters more than speed (both measured in ``pfn/weights/MODEL_CARD.md``).
    """

    def __init__(self, model_path: str | os.PathLike | None = None,
                 intra_op_threads: int | None = None, memory_arena: bool = True) -> None:
        self.prefix = DEFAULT_PREFIX if model_path is None else onnx_prefix(model_path)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
            else os.cpu_count()
        self.intra_op_threads = intra_op_threads or cores or 1
        self.memory_arena = memory_arena
        self._sessions: dict[tuple[str, str], ort.InferenceSession] = {}
        self._metadata: dict[str, str] | None = None

    def path(self, task: str, kind: str = "full") -> Path:
        """This engine's graph of ``task`` and ``kind`` (see :func:`graph_path`)."""
        return graph_path(self.prefix, task, kind)

    def has_split(self, task: str) -> bool:
        """Whether the fit/predict pair of ``task`` exists (then fit and predict use it)."""
        return self.path(task, "fit").is_file() and self.path(task, "predict").is_file()

    def session(self, task: str, kind: str = "full") -> ort.InferenceSession:
        """The session of one graph, created on first use."""
        if (task, kind) not in self._sessions:
            path = self.path(task, kind)
            if not path.is_file():
                raise FileNotFoundError(f"ONNX model not found: {path}")
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = self.intra_op_threads
            opts.inter_op_num_threads = 1
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            opts.enable_cpu_mem_arena = self.memory_arena
            opts.enable_mem_pattern = True
            try:
                sess = ort.InferenceSession(str(path), sess_options=opts,
                                            providers=["CPUExecutionProvider"])
            except Exception as err:  # ORT raises its own exception types
                raise ValueError(f"cannot load ONNX model {path}: {err}") from err
            meta = sess.get_modelmeta().custom_metadata_map
            found = (meta.get("task"), meta.get("graph", "full"))  # export v1: full only
            if found != (task, kind):
                raise ValueError(f"{path} is not the {task} {kind} graph (metadata task="
                                 f"{found[0]!r}, graph={found[1]!r})")
            self._sessions[(task, kind)] = sess
            if self._metadata is None:
                self._metadata = dict(meta)
        return self._sessions[(task, kind)]

    @property
    def metadata(self) -> dict[str, str]:
        """metadata_props of the graphs (all carry the same, apart from ``task``/``graph``)."""
        if self._metadata is None:  # from the first graph that exists, else name the first
            found = [(t, k) for t in TASKS for k in KINDS if self.path(t, k).is_file()]
            self.session(*(found[0] if found else (TASKS[0], "full")))
        return self._metadata

    @property
    def config(self) -> dict:
        return json.loads(self.metadata["config"])

    @property
    def max_features(self) -> int:
        return int(self.metadata["max_features"])

    @property
    def max_classes(self) -> int:
        return int(self.metadata["max_classes"])

    @property
    def n_buckets(self) -> int:
        return int(self.metadata["n_buckets"])

    def fit(self, x_train, y_train, task: str = "classification") -> OnnxContext:
        """Encode the training rows x_train (B, N, F), y_train (B, N) (see the class doc)."""
        check_task(task)
        x = _as_float32("x_train", x_train, 3)
        y = _as_float32("y_train", y_train, 2)
        if y.shape != x.shape[:2]:
            raise ValueError(f"y_train shape {y.shape} does not match x_train's (B, N) = "
                             f"{x.shape[:2]}")
        if x.shape[1] < 2:
            raise ValueError(f"need at least 2 training rows, got {x.shape[1]}")
        if x.shape[2] > self.max_features:
            raise ValueError(f"x_train has {x.shape[2]} features; this model takes at most "
                             f"{self.max_features}")
        if not np.isfinite(y).all():
            raise ValueError("y_train must be finite (no NaN or inf)")
        if task == "classification":
            if (y < 0).any() or (y != np.round(y)).any() or y.max() >= self.max_classes:
                raise ValueError(f"classification y_train must hold class indices 0.."
                                 f"{self.max_classes - 1}, got values in "
                                 f"[{y.min()}, {y.max()}]")
        if not self.has_split(task):
            return OnnxContext(task, x.shape, x_train=x, y_train=y)
        n = x.shape[1]
        cache = self._run_grouped(self.session(task, "fit"), {"x_train": x, "y_train": y},
                                  scores_per_dataset=n * n)
        return OnnxContext(task, x.shape, cache=cache)

    def predict(self, context: OnnxContext, x_test) -> dict[str, np.ndarray]:
        """Predict x_test (B, T, F): {"probs": (B, T, C)} or {"logits": (B, T, K),
        "borders": (B, K+1)} for regression (buckets in y_train's units)."""
        if not isinstance(context, OnnxContext):
            raise TypeError(f"context must come from OnnxEngine.fit, got {type(context)}")
        x = _as_float32("x_test", x_test, 3)
        b, n, f = context.shape
        if x.shape[0] != b or x.shape[2] != f:
            raise ValueError(f"x_test shape {x.shape} does not match the context's "
                             f"(B, *, F) = ({b}, *, {f})")
        t = x.shape[1]
        if context.cache is None:
            feeds = {"x_train": context.x_train, "y_train": context.y_train, "x_test": x}
            return self._run_grouped(self.session(context.task), feeds, (n + t) * n)
        sess = self.session(context.task, "predict")
        feeds = {i.name: context.cache[i.name] for i in sess.get_inputs() if i.name != "x_test"}
        out = self._run_grouped(sess, {**feeds, "x_test": x}, scores_per_dataset=t * n)
        if context.task == "regression":
            out["borders"] = context.cache["borders"]
        return out

    def _run_grouped(self, sess: ort.InferenceSession, feeds: dict[str, np.ndarray],
                     scores_per_dataset: int) -> dict[str, np.ndarray]:
        """Run ``sess`` on the datasets (axis 0 of every input) in groups, outputs by name.

        Datasets are independent, so they run in groups whose attention scores stay under
        SCORES_BUDGET floats: peak memory then stops growing with the number of datasets,
        while the matrix products stay large enough to run at full speed (the budget's
        measurement is in ``pfn/weights/MODEL_CARD.md``).
        """
        b = next(iter(feeds.values())).shape[0]
        per_dataset = int(self.config.get("n_heads", 1)) * scores_per_dataset
        group = max(1, SCORES_BUDGET // max(per_dataset, 1))
        names = [o.name for o in sess.get_outputs()]
        parts = [sess.run(None, {k: v[i:i + group] for k, v in feeds.items()})
                 for i in range(0, b, group)]
        outs = parts[0] if len(parts) == 1 else \
            [np.concatenate(arrays) for arrays in zip(*parts, strict=True)]
        return dict(zip(names, outs, strict=True))


__all__ = ["OnnxEngine", "OnnxContext", "SCORES_BUDGET"]
