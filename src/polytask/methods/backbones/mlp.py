"""``mlp``: a fully connected backbone for tabular rows (and flattened images)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from polytask.core.errors import ConfigError
from polytask.methods.backbones.base import register_backbone


class MLP(nn.Module):
    """Flatten, then ``Linear -> ReLU -> Dropout`` per hidden width.

    With ``embeddings = [(n_levels + 1, dim), ...]`` the last ``len(embeddings)`` input
    columns hold integer codes of categorical columns (0: unknown): each is looked up in a
    learned ``nn.Embedding(n_levels + 1, dim)`` and the vectors are concatenated after the
    other columns before the first linear layer. Codes are rounded and clipped to the
    table (augmentation may have moved them). Without embeddings the module, its
    parameters and their creation order are those of the plain MLP, so seeded runs on
    numeric inputs reproduce bit for bit; the embeddings are created after the layers.
    """

    def __init__(self, in_features: int, hidden: list[int], dropout: float, embeddings: Sequence[tuple[int, int]] = ()):
        super().__init__()
        embeddings = [(int(n), int(d)) for n, d in embeddings]
        self.n_codes = len(embeddings)
        if self.n_codes > in_features:
            raise ConfigError(f"backbone 'mlp': {self.n_codes} coded columns but only {in_features} input columns")
        in_features += sum(d for _, d in embeddings) - self.n_codes
        layers: list[nn.Module] = [nn.Flatten()]
        for width in hidden:
            layers += [nn.Linear(in_features, width), nn.ReLU(), nn.Dropout(dropout)]
            in_features = width
        self.net = nn.Sequential(*layers)
        self.out_features = in_features
        if embeddings:
            self.embeddings = nn.ModuleList(nn.Embedding(n, d) for n, d in embeddings)
            self.register_buffer("code_max", torch.tensor([n - 1 for n, _ in embeddings]), persistent=False)

    @property
    def embedding_sizes(self) -> tuple[tuple[int, int], ...]:
        """``(n_levels + 1, dim)`` of each embedded code column (empty: none)."""
        return tuple((e.num_embeddings, e.embedding_dim) for e in self.embeddings) if self.n_codes else ()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.n_codes:
            x = x.flatten(1)
            codes = torch.minimum(x[:, -self.n_codes :].round().clamp(min=0).long(), self.code_max)
            x = torch.cat([x[:, : -self.n_codes], *(emb(codes[:, i]) for i, emb in enumerate(self.embeddings))], dim=1)
        return self.net(x)


@register_backbone("mlp")
def build_mlp(input_shape: tuple[int, ...], hidden: Sequence[int] = (256, 256), dropout: float = 0.1, embeddings: Sequence[Sequence[int]] = ()) -> nn.Module:
    """An :class:`MLP` over the flattened inputs: ``hidden`` layer widths, then ``dropout``.

    ``embeddings``: ``[(n_levels + 1, dim), ...]`` for the last ``len(embeddings)`` input
    columns, integer codes of categorical columns (0: unknown) that are embedded. A study
    passes a table's :attr:`~polytask.data.tabular.TableLayout.embeddings` here; the input
    shape stays a plain tuple, its width counting each code column once.
    """
    if not all(isinstance(d, int) for d in input_shape):
        raise ConfigError("backbone 'mlp' reads numeric inputs, but the task's inputs are text: use gru, minilm or hf:<name>")
    return MLP(math.prod(input_shape), list(hidden), dropout, embeddings)
