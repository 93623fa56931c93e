"""A plain reference transformer, the yardstick for "how long is one training step".

Speed benchmarks report their costs relative to one training step of this model, so their
numbers mean the same thing on any machine: d_model 256, 6 layers, 4 heads, feed-forward 512,
a batch of 16 datasets x 512 rows, AdamW. It is deliberately naive: ``nn.TransformerEncoder``
with an explicit full (all-zero) attention mask over all rows, one token per row (features
and, for training rows, the label summed into it), a linear classification head.

    from benchmarks.reference import reference_step_seconds
    seconds = reference_step_seconds(repeats=5)
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn


class ReferenceModel(nn.Module):
    """Rows as tokens: x (B, R, F) and training labels (B, N) -> class logits (B, R, C)."""

    def __init__(self, n_features: int = 100, n_classes: int = 10, d_model: int = 256,
                 n_layers: int = 6, n_heads: int = 4, d_ff: int = 512) -> None:
        super().__init__()
        self.x_embed = nn.Linear(n_features, d_model)
        self.y_embed = nn.Embedding(n_classes, d_model)
        layer = nn.TransformerEncoderLayer(d_model, n_heads, d_ff, dropout=0.0,
                                           batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, n_classes)

    def forward(self, x: torch.Tensor, y_train: torch.Tensor) -> torch.Tensor:
        n_train, n_rows = y_train.shape[1], x.shape[1]
        h = self.x_embed(x)  # (B, R, F) -> (B, R, E)
        h = torch.cat([h[:, :n_train] + self.y_embed(y_train), h[:, n_train:]], dim=1)
        full = torch.zeros(n_rows, n_rows, device=x.device)  # every row attends to every row
        return self.head(self.encoder(h, mask=full))  # (B, R, E) -> (B, R, C)


def reference_step_seconds(repeats: int = 5, batch_size: int = 16, n_rows: int = 512,
                           n_features: int = 100, seed: int = 0) -> float:
    """Median wall time (s) of one forward + backward + AdamW step of :class:`ReferenceModel`.

    One untimed warm-up step comes first; half the rows are training rows.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    g = torch.Generator().manual_seed(seed)
    model = ReferenceModel(n_features=n_features)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch_size, n_rows, n_features, generator=g)
    y = torch.randint(0, 10, (batch_size, n_rows), generator=g)
    n_train = n_rows // 2

    def step() -> None:
        logits = model(x, y[:, :n_train])[:, n_train:]
        loss = F.cross_entropy(logits.flatten(0, 1), y[:, n_train:].flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


if __name__ == "__main__":
    torch.set_num_threads(1)
    print(f"reference step: {reference_step_seconds():.3f} s")
