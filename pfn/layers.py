"""The transformer layer shared by the in-context transformer and the cell encoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    """Pre-norm transformer layer whose keys and values come from training rows only."""

    def __init__(self, e: int, n_heads: int, d_ff: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.ln1 = nn.LayerNorm(e)
        self.q = nn.Linear(e, e)
        self.kv = nn.Linear(e, 2 * e)
        self.proj = nn.Linear(e, e)
        self.ln2 = nn.LayerNorm(e)
        self.ff = nn.Sequential(nn.Linear(e, d_ff), nn.GELU(), nn.Linear(d_ff, e))
        self.dropout = dropout

    def _split(self, t: torch.Tensor) -> torch.Tensor:  # (B, L, E) -> (B, H, L, E/H)
        b, n, e = t.shape
        return t.view(b, n, self.n_heads, e // self.n_heads).transpose(1, 2)

    def keys_values(self, h_train: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N, E) training states -> keys and values, each (B, H, N, E/H)."""
        k, v = self.kv(self.ln1(h_train)).chunk(2, dim=-1)
        return self._split(k), self._split(v)

    def attend(self, h: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               mask: torch.Tensor | None = None) -> torch.Tensor:
        """Update states h (B, L, E) by attending to the given keys and values (B, H, N, E/H);
        ``mask``: optional bool (B, 1, 1, N), False for keys to ignore."""
        b, n, e = h.shape
        q = self._split(self.q(self.ln1(h)))
        p = self.dropout if self.training else 0.0
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=p)  # (B, H, L, E/H)
        h = h + self.proj(a.transpose(1, 2).reshape(b, n, e))
        return h + self.ff(self.ln2(h))
