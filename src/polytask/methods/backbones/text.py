"""Text backbones: token ids in, one feature vector per text out.

Text tasks hold raw strings; each text backbone comes with an *encoder* that turns a
list of strings into a ``LongTensor [N, L]`` of token ids (``pad_id`` pads), done once
per run when the task's tensors are prepared. The backbone then maps ids to features.

- ``gru`` (scratch baseline, :mod:`~polytask.methods.backbones.gru`): hashed word ids
  (:class:`HashTokenizer`: no vocabulary to fit, so every run and every strategy of a
  study tokenizes alike), an embedding and a bidirectional GRU, mean-pooled over the
  real tokens.
- :class:`TransformerEncoder` (``minilm``, ``hf:<name>``): a Hugging Face encoder with
  its own tokenizer, mean-pooled over the attention mask.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence

import torch
from torch import nn

from polytask.core.errors import ConfigError
from polytask.core.inputs import TEXT_SHAPE

_WORD = re.compile(r"\w+|[^\w\s]")


class HashTokenizer:
    """Lower-cased words and punctuation, each hashed (CRC32) to one of ``vocab_size`` ids.

    Id 0 pads and id 1 is reserved for masking (augmentation); words take ids
    ``2 .. vocab_size - 1``. Hashing needs no fitted vocabulary (Weinberger et al. 2009);
    with 2^15 buckets, collisions among a few thousand distinct words are rare and harmless.
    """

    pad_id = 0
    mask_id = 1

    def __init__(self, vocab_size: int, max_length: int):
        self.vocab_size = vocab_size
        self.max_length = max_length

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        rows = []
        for text in texts:
            words = _WORD.findall(str(text).lower())[: self.max_length] or [""]
            rows.append([2 + zlib.crc32(w.encode()) % (self.vocab_size - 2) for w in words])
        longest = max(len(r) for r in rows)
        out = torch.zeros(len(rows), longest, dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, : len(r)] = torch.tensor(r)
        return out


def masked_mean(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``states [N, L, D]`` over the positions where ``mask [N, L]`` is true."""
    m = mask.unsqueeze(-1).to(states.dtype)
    return (states * m).sum(1) / m.sum(1).clamp_min(1.0)


class HFTokenizer:
    """A Hugging Face tokenizer as an encoder: strings to padded, truncated input ids."""

    def __init__(self, tokenizer, max_length: int):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.mask_id = tokenizer.mask_token_id if tokenizer.mask_token_id is not None else tokenizer.unk_token_id

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        enc = self.tokenizer([str(t) for t in texts], padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        return enc["input_ids"]


class TransformerEncoder(nn.Module):
    """A Hugging Face encoder model, mean-pooled over the real tokens.

    Args:
        model: a ``transformers`` encoder (``AutoModel``) returning ``last_hidden_state``.
        tokenizer: its :class:`HFTokenizer`.
        normalize: L2-normalize the pooled vector (what sentence-transformers does for
            all-MiniLM-L6-v2, whose similarity scores assume unit vectors).
    """

    def __init__(self, model: nn.Module, tokenizer: HFTokenizer, normalize: bool = False):
        super().__init__()
        if getattr(model, "pooler", None) is not None:
            # Mean pooling replaces the [CLS] pooler; dropping it keeps unused weights out
            # of parameter counts, the optimizer and layer-wise learning rates.
            model.pooler = None
        self.model = model
        self.tokenizer = tokenizer
        self.normalize = normalize
        self.out_features = int(model.config.hidden_size)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = ids != self.tokenizer.pad_id
        states = self.model(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        pooled = masked_mean(states, mask)
        return nn.functional.normalize(pooled, dim=-1) if self.normalize else pooled

    def layer_groups(self) -> list[nn.Module]:
        """Embeddings, then each transformer layer: the units of gradual unfreezing and
        layer-wise learning rates (bottom first)."""
        layers = getattr(getattr(self.model, "encoder", None), "layer", None)
        if layers is None:
            return [self.model]
        return [self.model.embeddings, *layers]


def check_text_shape(name: str, input_shape: tuple) -> None:
    """Refuse non-text inputs for text backbone ``name``."""
    if tuple(input_shape) != TEXT_SHAPE:
        raise ConfigError(f"backbone '{name}' reads text; got samples of shape {input_shape} (give a text column: data: {{csv: ..., text: <column>}})")
