"""ONNX Runtime engine for the exported graphs: numpy + onnxruntime only, never torch.

The engine is the ONNX twin of the torch engine the estimators use. Where the fit/predict
graph pair exists (``pfn export`` writes it), ``fit`` runs the fit graph once and keeps its
outputs (the training rows' per-layer keys and values, as the torch engine's cache does),
and every ``predict`` runs only the test rows through the predict graph: fit once, predict
many. For a prefix with only the full graphs (an older or hand-made export), ``fit``
validates and stores the training rows and ``predict`` runs the full graph. Everything else
(label encoding, categorical coding, ensemble transforms) happens before, in
``pfn.preprocessing``, identically for both engines; see ``export/FORMAT.md``.

Trust: on first use the engine reads the metadata of every graph of its prefix and refuses
graphs that come from different weights (``weights_sha256``); each graph is read once,
its seal (``content_sha256``) checked, and those very bytes handed to ONNX Runtime, so a
damaged file is refused before anything runs. Sessions are created under a lock: threads
that ask for the same graph at once share one session (ONNX Runtime's ``run`` is
thread-safe).

Shapes: B datasets, N training rows, T test rows, F features.
"""

from __future__ import annotations

import json
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from pfn.artifacts import (
    DEFAULT_PREFIX,
    KINDS,
    TASKS,
    check_task,
    graph_path,
    graph_weights,
    onnx_prefix,
    read_graph,
    read_graph_metadata,
)
from pfn.engines.base import check_context_arrays

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
        self._weights: str | None = None
        self._warned = False
        self._lock = threading.RLock()

    def path(self, task: str, kind: str = "full") -> Path:
        """This engine's graph of ``task`` and ``kind`` (see :func:`graph_path`)."""
        return graph_path(self.prefix, task, kind)

    def has_split(self, task: str) -> bool:
        """Whether the fit/predict pair of ``task`` exists (then fit and predict use it)."""
        return self.path(task, "fit").is_file() and self.path(task, "predict").is_file()

    def session(self, task: str, kind: str = "full") -> ort.InferenceSession:
        """The session of one graph, created on first use (once, whatever the threads)."""
        sess = self._sessions.get((task, kind))
        if sess is None:
            with self._lock:
                if (task, kind) not in self._sessions:
                    self._sessions[(task, kind)] = self._load(task, kind)
                sess = self._sessions[(task, kind)]
        return sess

    def _load(self, task: str, kind: str) -> ort.InferenceSession:
        """Check the prefix, read and verify one graph, and create its session from the
        verified bytes (never from the path, which could change in between)."""
        self._check_prefix()
        graph = read_graph(self.path(task, kind))
        meta = graph.metadata
        found = (meta.get("task"), meta.get("graph", "full"))  # export v1: full only
        if found != (task, kind):
            raise ValueError(f"{graph.path} is not the {task} {kind} graph (metadata task="
                             f"{found[0]!r}, graph={found[1]!r})")
        if graph_weights(meta) != self._weights:
            raise ValueError(f"{graph.path} comes from weights {graph_weights(meta)}, the "
                             f"other graphs of {self.prefix} from {self._weights}")
        if not graph.verified and not self._warned:
            self._warned = True
            warnings.warn(f"{graph.path} (export_version {meta.get('export_version')}) "
                          "records no content_sha256, so it is loaded unverified; re-export "
                          "it with `pfn export` to seal it", UserWarning, stacklevel=4)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.intra_op_threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.enable_cpu_mem_arena = self.memory_arena
        opts.enable_mem_pattern = True
        try:
            return ort.InferenceSession(graph.data, sess_options=opts,
                                        providers=["CPUExecutionProvider"])
        except Exception as err:  # ORT raises its own exception types
            raise ValueError(f"cannot load ONNX model {graph.path}: {err}") from err

    def _check_prefix(self) -> None:
        """Read every graph's metadata once; refuse graphs of the prefix from other weights."""
        if self._metadata is not None:
            return
        with self._lock:
            if self._metadata is not None:
                return
            found = {(t, k): read_graph_metadata(self.path(t, k))
                     for t in TASKS for k in KINDS if self.path(t, k).is_file()}
            if not found:
                raise FileNotFoundError(f"ONNX model not found: {self.path(TASKS[0])}")
            weights = {key: graph_weights(meta) for key, meta in found.items()}
            first = next(iter(found))
            for key, value in weights.items():
                if value != weights[first]:
                    raise ValueError(
                        f"ONNX graphs of {self.prefix} come from different weights: "
                        f"{self.path(*first).name} from {weights[first]}, "
                        f"{self.path(*key).name} from {value}; export them together")
            self._weights = weights[first]
            self._metadata = found[first]

    @property
    def metadata(self) -> dict[str, str]:
        """metadata_props of the graphs (all carry the same, apart from ``task``/``graph``
        and their seal)."""
        self._check_prefix()
        return self._metadata

    @property
    def weights_fingerprint(self) -> str | None:
        """The fingerprint of the weights the graphs were exported from (``weights_sha256``,
        the torch engine's fingerprint of the same weights file; ``+int8-dynamic`` for
        quantised graphs, which compute other numbers)."""
        self._check_prefix()
        return self._weights

    @property
    def config(self) -> dict:
        return json.loads(self.metadata["config"])

    @property
    def n_heads(self) -> int:
        return int(self.config.get("n_heads", 1))

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
            self.session(task)  # verified before the context is accepted
            return OnnxContext(task, x.shape, x_train=x, y_train=y)
        self.session(task, "predict")  # both graphs of the pair verified before either runs
        n = x.shape[1]
        cache = self._run_grouped(self.session(task, "fit"), {"x_train": x, "y_train": y},
                                  scores_per_dataset=n * n)
        return OnnxContext(task, x.shape, cache=cache)

    def save_context(self, context: OnnxContext) -> dict[str, np.ndarray]:
        """The fit graph's outputs by name: the portable cache format both engines read."""
        if not isinstance(context, OnnxContext):
            raise TypeError(f"context must come from OnnxEngine.fit, got {type(context)}")
        if context.cache is None:
            raise ValueError(f"{self.prefix} has no fit/predict pair for {context.task}: its "
                             "context is the training rows themselves, not a cache")
        return dict(context.cache)

    def load_context(self, arrays: dict[str, np.ndarray], task: str) -> OnnxContext:
        """A context from :meth:`save_context`'s arrays (of this engine or the torch one)."""
        check_task(task)
        sess = self.session(task, "predict")
        need = [i.name for i in sess.get_inputs() if i.name != "x_test"]
        extra = ["borders"] if task == "regression" else []  # returned as the engine made it
        check_context_arrays(arrays, need + extra)
        cache = {name: np.ascontiguousarray(arrays[name], dtype=np.int64 if
                                            name == "num_classes" else np.float32)
                 for name in need}
        cache.update({name: np.asarray(arrays[name]) for name in extra})
        k0 = cache["k0"]
        return OnnxContext(task, (k0.shape[0], k0.shape[2], cache["x_mean"].shape[-1]),
                           cache=cache)

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
        per_dataset = self.n_heads * scores_per_dataset
        group = max(1, SCORES_BUDGET // max(per_dataset, 1))
        names = [o.name for o in sess.get_outputs()]
        parts = [sess.run(None, {k: v[i:i + group] for k, v in feeds.items()})
                 for i in range(0, b, group)]
        outs = parts[0] if len(parts) == 1 else \
            [np.concatenate(arrays) for arrays in zip(*parts, strict=True)]
        return dict(zip(names, outs, strict=True))


__all__ = ["OnnxEngine", "OnnxContext", "SCORES_BUDGET"]
