"""``gru``: the text backbone trained from scratch (hashed word ids, a bidirectional GRU)."""

from __future__ import annotations

import torch
from torch import nn

from polytask.methods.backbones.base import register_backbone
from polytask.methods.backbones.text import HashTokenizer, check_text_shape, masked_mean


class GRUEncoder(nn.Module):
    """Embedding, bidirectional GRU, mean over the non-pad tokens, dropout."""

    def __init__(self, vocab_size: int, embedding: int, hidden: int, layers: int, dropout: float, max_length: int):
        super().__init__()
        self.tokenizer = HashTokenizer(vocab_size, max_length)
        self.embedding = nn.Embedding(vocab_size, embedding, padding_idx=HashTokenizer.pad_id)
        self.gru = nn.GRU(embedding, hidden, num_layers=layers, batch_first=True, bidirectional=True, dropout=dropout if layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.out_features = 2 * hidden

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = ids != HashTokenizer.pad_id
        states, _ = self.gru(self.embedding(ids))
        return self.dropout(masked_mean(states, mask))


@register_backbone("gru", options=("gru", "text"))
def build_gru(
    input_shape: tuple, vocab_size: int = 32768, embedding: int = 64, hidden: int = 64, layers: int = 1, dropout: float = 0.1, max_length: int = 64
) -> nn.Module:
    """A :class:`GRUEncoder` over hashed word ids (the model config's ``gru`` and ``text`` sections)."""
    check_text_shape("gru", input_shape)
    return GRUEncoder(vocab_size, embedding, hidden, layers, dropout, max_length)
