"""Blocks shared by several TIReID heads. Remote code: imports only torch and transformers."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class IdentityClassifier(nn.Linear):
    """One linear classifier over ``num_ids`` identities, shared by both modalities:
    [N, D] features -> [N, num_ids] logits. Initialised N(0, 0.001) with zero bias, as IRRA's."""

    def __init__(self, in_features: int, num_ids: int):
        super().__init__(in_features, num_ids)


class MultiHeadAttention(nn.Module):
    """Multi-head attention whose head width is free of the model width (LGUR's decoder: 6 heads of
    512 at width 384). Parameters are named and shaped as in ``nn.MultiheadAttention``
    (``in_proj_weight`` [3 * inner, width], ``in_proj_bias`` [3 * inner], ``out_proj`` inner -> width,
    ``inner = num_heads * head_dim``), so with ``head_dim = width / num_heads`` it is a drop-in
    replacement that loads that module's weights::

        q, k, v = x W_q^T + b_q, m W_k^T + b_k, m W_v^T + b_v          split into heads of head_dim
        out = concat_h(softmax(q_h k_h^T / sqrt(head_dim) + padding) v_h) W_o^T + b_o

    Args:
        width: feature width of queries and keys/values (input and output).
        num_heads: number of heads.
        head_dim: width of each head; ``None`` means ``width / num_heads`` (``width`` must divide by it).
        dropout: dropout on the attention weights in training.
    """

    def __init__(self, width: int, num_heads: int, head_dim: int | None = None, dropout: float = 0.0):
        super().__init__()
        if head_dim is None:
            if width % num_heads:
                raise ValueError(f"width ({width}) must be a multiple of num_heads ({num_heads})")
            head_dim = width // num_heads
        self.num_heads, self.head_dim, self.dropout = num_heads, head_dim, dropout
        inner = num_heads * head_dim
        self.in_proj_weight = nn.Parameter(torch.empty(3 * inner, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * inner))
        self.out_proj = nn.Linear(inner, width)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """As ``nn.MultiheadAttention``: Xavier-uniform input projections, zero input bias (the output
        projection is a ``nn.Linear`` the model's ``_init_weights`` initialises)."""
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.in_proj_bias)

    def forward(self, query, key, value, key_padding_mask=None, need_weights: bool = False):
        """query [N, Lq, width], key/value [N, Lk, width], key_padding_mask [N, Lk] bool (True = ignored).
        Returns ``(out [N, Lq, width], weights [N, Lq, Lk] averaged over heads, or None)``."""
        weights_q, weights_k, weights_v = self.in_proj_weight.chunk(3)
        bias_q, bias_k, bias_v = self.in_proj_bias.chunk(3)
        q, k, v = (self._split_heads(F.linear(x, w, b)) for x, w, b in
                   ((query, weights_q, bias_q), (key, weights_k, bias_k), (value, weights_v, bias_v)))
        mask = None if key_padding_mask is None else ~key_padding_mask[:, None, None, :]
        dropout = self.dropout if self.training else 0.0
        if need_weights:
            scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            attention = scores.softmax(dim=-1)
            out = F.dropout(attention, dropout, self.training) @ v
            weights = attention.mean(dim=1)
        else:
            out, weights = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout), None
        return self.out_proj(out.transpose(1, 2).flatten(2)), weights

    def _split_heads(self, x):
        """[N, L, heads * head_dim] -> [N, heads, L, head_dim]."""
        return x.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)


class DecoderLayer(nn.Module):
    """Pre-norm transformer decoder layer shared by the heads: optional self-attention over the
    queries, optional cross-attention from the queries to a memory, then a feed-forward block;
    each sub-block is residual::

        x = x + SelfAttn(LN(x))                       (self_attention=True)
        x = x + CrossAttn(LN(x), LN_m(memory))        (cross_attention=True)
        x = x + MLP(LN(x))                            (MLP: Linear(w, r*w) -> GELU -> Linear(r*w, w))

    Args:
        width: feature width of queries and memory.
        num_heads: attention heads (``width`` must divide by it).
        self_attention / cross_attention: which attention sub-blocks exist.
        mlp_ratio: hidden width of the feed-forward block over ``width``.
        dropout: dropout inside attention and after the MLP.
        head_dim: width of each attention head (:class:`MultiHeadAttention`); ``None``: ``width / num_heads``.
    """

    def __init__(self, width: int, num_heads: int, self_attention: bool = True, cross_attention: bool = True,
                 mlp_ratio: float = 4.0, dropout: float = 0.0, head_dim: int | None = None):
        super().__init__()
        if head_dim is None and width % num_heads:
            raise ValueError(f"width ({width}) must be a multiple of num_heads ({num_heads})")
        if not (self_attention or cross_attention):
            raise ValueError("a DecoderLayer needs self_attention, cross_attention or both")
        self.self_norm = nn.LayerNorm(width) if self_attention else None
        self.self_attention = MultiHeadAttention(width, num_heads, head_dim, dropout) if self_attention else None
        self.cross_norm = nn.LayerNorm(width) if cross_attention else None
        self.memory_norm = nn.LayerNorm(width) if cross_attention else None
        self.cross_attention = MultiHeadAttention(width, num_heads, head_dim, dropout) if cross_attention else None
        self.mlp_norm = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width), nn.Dropout(dropout))

    def forward(self, queries, memory=None, query_padding_mask=None, memory_padding_mask=None, return_attention: bool = False):
        """Args:
            queries: [N, Lq, width].
            memory: [N, Lm, width] (required with cross-attention).
            query_padding_mask / memory_padding_mask: [N, Lq] / [N, Lm] bool, True = padding (ignored as a key).
            return_attention: also return the cross-attention weights [N, Lq, Lm] (averaged over heads).
        Returns: [N, Lq, width] (and the attention weights when asked).
        """
        attention = None
        if self.self_attention is not None:
            normed = self.self_norm(queries)
            queries = queries + self.self_attention(normed, normed, normed, key_padding_mask=query_padding_mask,
                                                    need_weights=False)[0]
        if self.cross_attention is not None:
            if memory is None:
                raise ValueError("this DecoderLayer has cross-attention: pass `memory` [N, Lm, width]")
            memory = self.memory_norm(memory)
            attended, attention = self.cross_attention(self.cross_norm(queries), memory, memory,
                                                       key_padding_mask=memory_padding_mask, need_weights=return_attention)
            queries = queries + attended
        queries = queries + self.mlp(self.mlp_norm(queries))
        return (queries, attention) if return_attention else queries
