"""Blocks shared by several TIReID heads. Remote code: imports only torch and transformers."""

from __future__ import annotations

from torch import nn


class IdentityClassifier(nn.Linear):
    """One linear classifier over ``num_ids`` identities, shared by both modalities:
    [N, D] features -> [N, num_ids] logits. Initialised N(0, 0.001) with zero bias, as IRRA's."""

    def __init__(self, in_features: int, num_ids: int):
        super().__init__(in_features, num_ids)


class DecoderLayer(nn.Module):
    """Pre-norm transformer decoder layer shared by the heads: optional self-attention over the
    queries, optional cross-attention from the queries to a memory, then a feed-forward block;
    each sub-block is residual::

        x = x + SelfAttn(LN(x))                       (self_attention=True)
        x = x + CrossAttn(LN(x), LN_m(memory))        (cross_attention=True)
        x = x + MLP(LN(x))                            (MLP: Linear(w, r*w) -> GELU -> Linear(r*w, w))

    Used as LGUR's dictionary reconstruction (cross-attention only, the dictionary as memory),
    PGU's prototype decoder and CADA's cross-modal decoder (both), UIT's text-guided restoration
    (cross-attention, then self-attention-only layers) and LCR2S's attentional fusion.

    Args:
        width: feature width of queries and memory.
        num_heads: attention heads (``width`` must divide by it).
        self_attention / cross_attention: which attention sub-blocks exist.
        mlp_ratio: hidden width of the feed-forward block over ``width``.
        dropout: dropout inside attention and after the MLP.
    """

    def __init__(self, width: int, num_heads: int, self_attention: bool = True, cross_attention: bool = True,
                 mlp_ratio: float = 4.0, dropout: float = 0.0):
        super().__init__()
        if width % num_heads:
            raise ValueError(f"width ({width}) must be a multiple of num_heads ({num_heads})")
        if not (self_attention or cross_attention):
            raise ValueError("a DecoderLayer needs self_attention, cross_attention or both")
        self.self_norm = nn.LayerNorm(width) if self_attention else None
        self.self_attention = nn.MultiheadAttention(width, num_heads, dropout=dropout, batch_first=True) if self_attention else None
        self.cross_norm = nn.LayerNorm(width) if cross_attention else None
        self.memory_norm = nn.LayerNorm(width) if cross_attention else None
        self.cross_attention = nn.MultiheadAttention(width, num_heads, dropout=dropout, batch_first=True) if cross_attention else None
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
