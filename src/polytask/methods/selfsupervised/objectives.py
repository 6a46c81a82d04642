"""The self-supervised objectives (see the package docstring)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polytask.core.errors import ConfigError
from polytask.core.registry import Registry

OBJECTIVES: Registry[Callable[..., nn.Module]] = Registry("self-supervised objective")


def _flat_width(input_shape: tuple) -> int:
    width = 1
    for d in input_shape:
        width *= int(d)
    return width


@OBJECTIVES.register("autoencoder")
class Autoencoder(nn.Module):
    """Reconstruct the input from the backbone's features with a linear decoder.

    ``forward(x)`` is ``decoder(backbone(x))``, flattened; its targets are ``x`` flattened,
    so the engine's squared error is ``mean ||decoder(backbone(x)) − x||² / D``.
    """

    def __init__(self, backbone: nn.Module, input_shape: tuple, **_):
        super().__init__()
        if input_shape and not isinstance(input_shape[0], int):
            raise ConfigError("pretrain: autoencoder and masked reconstruct numbers; text inputs need pretrain: simclr")
        self.backbone = backbone
        self.decoder = nn.Linear(backbone.out_features, _flat_width(input_shape))

    def targets(self, x: Tensor) -> Tensor:
        return x.reshape(len(x), -1)

    def forward(self, x: Tensor, task: str | None = None) -> Tensor:
        return self.decoder(self.backbone(x))


@OBJECTIVES.register("masked")
class MaskedAutoencoder(Autoencoder):
    """Reconstruct the masked entries of the input from the backbone's features of the
    input with those entries zeroed (a share ``mask_ratio`` of them, drawn per row).

    The output equals the target on the entries left visible, so the engine's squared
    error counts the masked entries alone (as MAE's loss counts masked patches only).
    The masks are drawn from a generator of the module's own: seeded at construction for
    training, and reseeded at each evaluation so that validation losses are comparable
    across epochs.
    """

    def __init__(self, backbone: nn.Module, input_shape: tuple, mask_ratio: float = 0.5, seed: int = 0, **_):
        super().__init__(backbone, input_shape)
        self.mask_ratio, self.seed = mask_ratio, seed
        self._gen = torch.Generator().manual_seed(seed)

    def forward(self, x: Tensor, task: str | None = None) -> Tensor:
        gen = self._gen if self.training else torch.Generator().manual_seed(self.seed + 1)
        masked = torch.rand(x.shape, generator=gen).to(x.device) < self.mask_ratio
        recon = self.decoder(self.backbone(x.masked_fill(masked, 0.0)))
        return torch.where(masked.reshape(len(x), -1), recon, x.reshape(len(x), -1))


def nt_xent(z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
    """Per pair, SimCLR's NT-Xent loss (Chen et al. 2020, Eq. 1), averaged over the pair's two
    directions: ``ℓ(i, j) = −log exp(sim(z_i, z_j)/τ) / Σ_{k≠i} exp(sim(z_i, z_k)/τ)`` over
    the ``2N`` views, ``sim`` the cosine similarity. Returns ``[N]``; its mean is the paper's
    ``L = (1/2N) Σ_k [ℓ(2k−1, 2k) + ℓ(2k, 2k−1)]``."""
    n = len(z1)
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    positive = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    per_view = F.cross_entropy(sim, positive, reduction="none")
    return (per_view[:n] + per_view[n:]) / 2


@OBJECTIVES.register("simclr")
class SimCLR(nn.Module):
    """Two augmented views of each input, the backbone, a projection head (Linear, ReLU,
    Linear, as in the paper) and :func:`nt_xent`.

    The engine minimises the mean squared output against zero targets; the output is the
    square root of each pair's NT-Xent term (strictly positive: the denominator holds the
    numerator and other terms), so that mean is exactly the paper's loss ``L``.

    Args:
        augment: the study's augmenter for the input kind (``augmenter(x, generator)``).
        temperature: τ (0.5, the paper's choice for its batch sizes below 1024 is 0.5).
        projection: width of the projection's output.
        seed: the views' generator (reseeded at each evaluation, as :class:`MaskedAutoencoder`).
    """

    def __init__(self, backbone: nn.Module, input_shape: tuple, augment=None, temperature: float = 0.5, projection: int = 64, seed: int = 0, **_):
        super().__init__()
        if augment is None:
            raise ConfigError("pretrain: simclr needs augmentations to make two views of an input: set augment on the source")
        self.backbone, self.augment, self.temperature, self.seed = backbone, augment, temperature, seed
        width = backbone.out_features
        self.projection = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, projection))
        self._gen = torch.Generator().manual_seed(seed)

    def targets(self, x: Tensor) -> Tensor:
        return torch.zeros(len(x), 1)

    def forward(self, x: Tensor, task: str | None = None) -> Tensor:
        gen = self._gen if self.training else torch.Generator().manual_seed(self.seed + 1)
        v1, v2 = self.augment(x, gen).x, self.augment(x, gen).x
        loss = nt_xent(self.projection(self.backbone(v1)), self.projection(self.backbone(v2)), self.temperature)
        return loss.sqrt().unsqueeze(1)


def build_objective(name: str, backbone: nn.Module, input_shape: tuple, **options) -> nn.Module:
    """The registered objective ``name`` around ``backbone``."""
    return OBJECTIVES.get_item(name)(backbone, input_shape, **options)
