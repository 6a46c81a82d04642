"""The self-supervised objectives against their papers' formulas on cases checked by hand,
and what the engine minimises for each."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from polytask.core.errors import ConfigError
from polytask.core.targets import task_loss
from polytask.core.tasks import Task
from polytask.data.augment import build_augmenter
from polytask.methods.selfsupervised import Autoencoder, MaskedAutoencoder, SimCLR, nt_xent


class Flat(nn.Module):
    def __init__(self, d_in: int = 6, d_out: int = 4):
        super().__init__()
        self.fc = nn.Linear(d_in, d_out)
        self.out_features = d_out

    def forward(self, x):
        return self.fc(x.reshape(len(x), -1))


def test_nt_xent_is_the_papers_loss_by_hand():
    torch.manual_seed(0)
    z1, z2 = torch.randn(3, 5), torch.randn(3, 5)
    tau = 0.5
    views = [*z1, *z2]  # 2N views; view k's positive is k+N (mod 2N)
    n2 = len(views)

    def sim(a, b):
        return float(torch.dot(a, b) / (a.norm() * b.norm()))

    def ell(i, j):
        num = math.exp(sim(views[i], views[j]) / tau)
        den = sum(math.exp(sim(views[i], views[k]) / tau) for k in range(n2) if k != i)
        return -math.log(num / den)

    expected = [(ell(i, i + 3) + ell(i + 3, i)) / 2 for i in range(3)]
    assert nt_xent(z1, z2, tau).tolist() == pytest.approx(expected, rel=1e-5)


def test_the_engines_squared_error_on_simclrs_output_is_the_mean_nt_xent():
    torch.manual_seed(0)
    objective = SimCLR(Flat(), (6,), augment=build_augmenter("tabular", {"noise": 0.3}), temperature=0.5, projection=3, seed=1)
    x = torch.randn(8, 6)
    out = objective.eval()(x)
    # The same two views again (eval reseeds the generator), through the projection.
    gen = torch.Generator().manual_seed(2)
    v1, v2 = objective.augment(x, gen).x, objective.augment(x, gen).x
    direct = nt_xent(objective.projection(objective.backbone(v1)), objective.projection(objective.backbone(v2)), 0.5).mean()
    loss = task_loss(Task("ssl", "regression", 1), out, objective.targets(x))
    assert loss.item() == pytest.approx(direct.item(), rel=1e-6)
    assert torch.equal(objective(x), out)  # evaluation views are fixed: validation losses compare across epochs


def test_the_autoencoder_reconstructs_the_input_and_the_masked_one_counts_masked_entries_only():
    torch.manual_seed(0)
    x = torch.randn(5, 2, 3)
    ae = Autoencoder(Flat(), (2, 3))
    assert ae(x).shape == (5, 6) and torch.equal(ae.targets(x), x.reshape(5, 6))
    mae = MaskedAutoencoder(Flat(), (2, 3), mask_ratio=0.5, seed=0).eval()
    out, y = mae(x), mae.targets(x)
    gen = torch.Generator().manual_seed(1)
    masked = (torch.rand(x.shape, generator=gen) < 0.5).reshape(5, 6)
    assert torch.equal(out[~masked], y[~masked])  # visible entries: no error
    recon = mae.decoder(mae.backbone(x.masked_fill(masked.reshape(5, 2, 3), 0.0)))
    assert torch.equal(out[masked], recon[masked])
    loss = task_loss(Task("ssl", "regression", 6), out, y)
    assert loss.item() == pytest.approx(((recon - y)[masked] ** 2).sum().item() / 30, rel=1e-6)


def test_text_cannot_be_reconstructed_and_simclr_needs_views():
    with pytest.raises(ConfigError, match="text inputs need pretrain: simclr"):
        Autoencoder(Flat(), ("text",))
    with pytest.raises(ConfigError, match="needs augmentations"):
        SimCLR(Flat(), (6,), augment=None)
