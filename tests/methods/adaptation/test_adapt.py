"""Domain adaptation losses: hand formulas, the shared contract, and a toy adaptation run."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from polytask.core.errors import ConfigError
from polytask.methods.adaptation import (
    ADAPTERS,
    CDAN,
    MCD,
    MDD,
    Adapter,
    adabn_recalibrate,
    adapter_names,
    classifier_discrepancy,
    coral_distance,
    create_adapter,
    entropy_weights,
    gaussian_mk_mmd,
    grad_reverse,
    grl_coefficient,
    mcc_loss,
    modified_log_loss,
)


def _batch(n_s=6, n_t=5, d=4, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    f_s = torch.randn(n_s, d, generator=g, requires_grad=True)
    f_t = (torch.randn(n_t, d, generator=g) + 1.0).requires_grad_()
    logits_s = torch.randn(n_s, c, generator=g, requires_grad=True)
    logits_t = torch.randn(n_t, c, generator=g, requires_grad=True)
    y_s = torch.randint(c, (n_s,), generator=g)
    return f_s, f_t, logits_s, logits_t, y_s


# --------------------------------------------------------------------------- contract


@pytest.mark.parametrize("name", adapter_names())
def test_every_method_runs_forward_and_backward(name):
    torch.manual_seed(0)
    adapter = create_adapter(name, feature_dim=4, n_classes=3)
    assert isinstance(adapter, Adapter) and adapter.name == name
    f_s, f_t, logits_s, logits_t, y_s = _batch()
    loss = adapter.loss(f_s, f_t, logits_s, logits_t, 0.5, y_s=y_s)
    assert loss.shape == () and torch.isfinite(loss)
    loss.backward()
    for t in (f_s, f_t, logits_s, logits_t):
        assert t.grad is None or torch.isfinite(t.grad).all()
    for p in adapter.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()


@pytest.mark.parametrize("name", adapter_names())
def test_trade_off_zero_gives_no_gradient_to_features(name):
    adapter = create_adapter(name, feature_dim=4, n_classes=3, trade_off=0.0)
    f_s, f_t, logits_s, logits_t, y_s = _batch()
    adapter.loss(f_s, f_t, logits_s, logits_t, 1.0, y_s=y_s).backward()
    # f_t only feeds the adaptation term in every method.
    assert f_t.grad is None or torch.count_nonzero(f_t.grad) == 0


@pytest.mark.parametrize("name", adapter_names())
def test_shape_and_progress_checks(name):
    adapter = create_adapter(name, feature_dim=4, n_classes=3)
    f_s, f_t, logits_s, logits_t, y_s = _batch()
    with pytest.raises(ValueError, match="progress"):
        adapter.loss(f_s, f_t, logits_s, logits_t, 1.5, y_s=y_s)
    with pytest.raises(ValueError, match="target features"):
        adapter.loss(f_s, f_t[:, :3], logits_s, logits_t, 0.5, y_s=y_s)
    with pytest.raises(ValueError, match="source logits"):
        adapter.loss(f_s, f_t, logits_s[:, :2], logits_t, 0.5, y_s=y_s)


def test_unknown_method_lists_known_ones():
    with pytest.raises(ConfigError, match="known: .*dann"):
        create_adapter("dnn", feature_dim=2, n_classes=2)
    with pytest.raises(ValueError, match="already registered"):
        ADAPTERS.register("dann")(Adapter)


# --------------------------------------------------------------------------- gradient reversal


def test_grl_forward_identity_backward_negated():
    x = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    y = grad_reverse(x, 0.3)
    assert torch.equal(y, x)
    (y * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([-0.3, -0.6, -0.9]))


def test_grl_schedule():
    assert grl_coefficient(0.0) == 0.0
    assert grl_coefficient(1.0) == pytest.approx(2 / (1 + math.exp(-10)) - 1)
    assert grl_coefficient(0.5, max_coeff=0.1) == pytest.approx(0.1 * (2 / (1 + math.exp(-5)) - 1))


def test_dann_discriminator_and_features_pull_opposite_ways():
    torch.manual_seed(0)
    adapter = create_adapter("dann", feature_dim=4, n_classes=3, hidden=8)
    f_s, f_t, logits_s, logits_t, _ = _batch()
    adapter.loss(f_s, f_t, logits_s, logits_t, 1.0).backward()
    # The features' gradient is the reversed gradient of the domain loss (coefficient grl(1)).
    fs2 = f_s.detach().clone().requires_grad_()
    d_s = adapter.discriminator(fs2).squeeze(1)
    d_t = adapter.discriminator(f_t.detach()).squeeze(1)
    plain = 0.5 * (F.binary_cross_entropy_with_logits(d_s, torch.ones(6)) + F.binary_cross_entropy_with_logits(d_t, torch.zeros(5)))
    plain.backward()
    torch.testing.assert_close(f_s.grad, -grl_coefficient(1.0) * fs2.grad)


# --------------------------------------------------------------------------- MMD


def test_mmd_of_identical_batches_is_zero():
    x = torch.randn(7, 3)
    assert gaussian_mk_mmd(x, x.clone()).item() == pytest.approx(0.0, abs=1e-6)


def test_mmd_two_points_fixed_bandwidth():
    x, y = torch.tensor([[0.0, 0.0]]), torch.tensor([[3.0, 4.0]])  # squared distance 25
    # K(x,x) = K(y,y) = 1; MMD² = 2 - 2 mean_k exp(-25 / (2^k * 10)).
    expected = 2 - 2 * sum(math.exp(-25 / (2.0**k * 10)) for k in range(-2, 3)) / 5
    assert gaussian_mk_mmd(x, y, bandwidth=10.0).item() == pytest.approx(expected, rel=1e-6)
    # Median heuristic: one pair, h = 25.
    expected = 2 - 2 * sum(math.exp(-1 / 2.0**k) for k in range(-2, 3)) / 5
    assert gaussian_mk_mmd(x, y).item() == pytest.approx(expected, rel=1e-6)


def test_mmd_bandwidth_is_pooled_median_and_scale_free():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(5, 2, generator=g), torch.randn(4, 2, generator=g) + 2
    z = torch.cat([x, y])
    d2 = torch.cdist(z, z) ** 2
    i, j = torch.triu_indices(9, 9, offset=1)
    h = d2[i, j].median().item()
    assert gaussian_mk_mmd(x, y).item() == pytest.approx(gaussian_mk_mmd(x, y, bandwidth=h).item(), rel=1e-5)
    assert gaussian_mk_mmd(3 * x, 3 * y).item() == pytest.approx(gaussian_mk_mmd(x, y).item(), rel=1e-5)


def test_dan_loss_is_trade_off_times_mmd():
    f_s, f_t, logits_s, logits_t, _ = _batch()
    adapter = create_adapter("dan", feature_dim=4, n_classes=3, trade_off=0.5)
    torch.testing.assert_close(adapter.loss(f_s, f_t, logits_s, logits_t, 0.0), 0.5 * gaussian_mk_mmd(f_s, f_t))


# --------------------------------------------------------------------------- CORAL


def test_coral_by_hand_2d():
    # Source: points (±1, 0) twice -> var_x = 4/3, var_y = 0, cov = 0 (unbiased, n = 4).
    f_s = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    # Target: (1,1), (-1,-1) -> var_x = var_y = cov = 2 (n = 2).
    f_t = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])
    # ΔC = [[4/3 - 2, -2], [-2, -2]]; ||ΔC||² = 4/9 + 12; divided by 4 d² = 16.
    expected = (4 / 9 + 12) / 16
    assert coral_distance(f_s, f_t).item() == pytest.approx(expected, rel=1e-6)
    adapter = create_adapter("deep-coral", feature_dim=2, n_classes=2, trade_off=2.0)
    out = adapter.loss(f_s, f_t, torch.zeros(4, 2), torch.zeros(2, 2), 0.3)
    assert out.item() == pytest.approx(2 * expected, rel=1e-6)


def test_coral_ignores_mean_shift_and_needs_two_samples():
    x = torch.randn(10, 3)
    assert coral_distance(x, x + 5.0).item() == pytest.approx(0.0, abs=1e-6)
    adapter = create_adapter("deep-coral", feature_dim=3, n_classes=2)
    with pytest.raises(ValueError, match="at least 2"):
        adapter.loss(x, x[:1], torch.zeros(10, 2), torch.zeros(1, 2), 0.0)


# --------------------------------------------------------------------------- CDAN


def test_cdan_exact_multilinear_map():
    adapter = CDAN(feature_dim=3, n_classes=2)
    assert not adapter.randomized
    f = torch.tensor([[1.0, 2.0, 3.0]])
    g = torch.tensor([[0.25, 0.75]])
    out = adapter.multilinear_map(f, g)
    assert out.shape == (1, 6)
    torch.testing.assert_close(out, torch.tensor([[0.25, 0.5, 0.75, 0.75, 1.5, 2.25]]))
    assert adapter.discriminator[0].in_features == 6


def test_cdan_randomized_map_is_fixed_by_seed():
    a, b = CDAN(feature_dim=100, n_classes=50, random_dim=64, seed=3), CDAN(feature_dim=100, n_classes=50, random_dim=64, seed=3)
    assert a.randomized and a.discriminator[0].in_features == 64
    assert torch.equal(a.r_f, b.r_f) and torch.equal(a.r_g, b.r_g)
    assert not any(p is a.r_f for p in a.parameters())  # a buffer, never trained
    f, g = torch.randn(5, 100), torch.softmax(torch.randn(5, 50), 1)
    out = a.multilinear_map(f, g)
    assert out.shape == (5, 64)
    torch.testing.assert_close(out, (f @ a.r_f) * (g @ a.r_g) / 8.0)


def test_cdan_entropy_weights():
    g = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    raw = torch.tensor([2.0, 1.0 + math.exp(-math.log(2))])  # H = 0 and log 2
    torch.testing.assert_close(entropy_weights(g), raw / raw.mean())


def test_cdan_e_loss_by_hand():
    torch.manual_seed(0)
    f_s, f_t, logits_s, logits_t, _ = _batch()
    adapter = CDAN(feature_dim=4, n_classes=3, entropy=True, hidden=8)
    out = adapter.loss(f_s, f_t, logits_s, logits_t, 0.7)
    g_s, g_t = logits_s.softmax(1), logits_t.softmax(1)
    d_s = adapter.discriminator(adapter.multilinear_map(f_s, g_s)).squeeze(1)
    d_t = adapter.discriminator(adapter.multilinear_map(f_t, g_t)).squeeze(1)
    l_s = (entropy_weights(g_s) * F.binary_cross_entropy_with_logits(d_s, torch.ones(6), reduction="none")).mean()
    l_t = (entropy_weights(g_t) * F.binary_cross_entropy_with_logits(d_t, torch.zeros(5), reduction="none")).mean()
    torch.testing.assert_close(out, 0.5 * (l_s + l_t))


# --------------------------------------------------------------------------- MCC


def test_mcc_by_hand_two_samples_two_classes():
    logits = torch.tensor([[2.5 * math.log(3.0), 0.0], [0.0, 0.0]])  # softmax(z / 2.5): (3/4, 1/4), (1/2, 1/2)
    y = torch.tensor([[0.75, 0.25], [0.5, 0.5]])
    h = -(y * y.log()).sum(1)
    w = 1 + torch.exp(-h)
    w = 2 * w / w.sum()
    c = sum(w[i] * torch.outer(y[i], y[i]) for i in range(2))
    c = c / c.sum(0, keepdim=True)
    expected = (c[0, 1] + c[1, 0]) / 2
    assert mcc_loss(logits).item() == pytest.approx(expected.item(), rel=1e-6)
    # Spelled out: w = (0.9478, 1.0522); C_01 = w1 3/16 + w2 1/4.
    w1, w2 = w.tolist()
    c00, c01, c11 = w1 * 9 / 16 + w2 / 4, w1 * 3 / 16 + w2 / 4, w1 / 16 + w2 / 4
    assert mcc_loss(logits).item() == pytest.approx((c01 / (c00 + c01) + c01 / (c01 + c11)) / 2, rel=1e-6)


def test_mcc_confident_distinct_predictions_have_low_confusion():
    confident = torch.tensor([[20.0, 0.0], [0.0, 20.0]])
    assert mcc_loss(confident).item() < 1e-3
    assert mcc_loss(torch.zeros(4, 2)).item() == pytest.approx(0.5)  # uniform: every column (1/2, 1/2)


# --------------------------------------------------------------------------- AdaBN


def test_adabn_loss_is_connected_zero():
    f_s, f_t, logits_s, logits_t, _ = _batch()
    out = create_adapter("adabn", feature_dim=4, n_classes=3).loss(f_s, f_t, logits_s, logits_t, 0.2)
    assert out.item() == 0.0 and out.requires_grad
    out.backward()
    assert torch.count_nonzero(f_s.grad) == 0


@pytest.mark.parametrize("batch_size", [64, 10])
def test_adabn_recalibrate_sets_target_statistics(batch_size):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5), nn.BatchNorm1d(3, momentum=0.3))
    model(torch.randn(16, 3))  # source statistics
    model.eval()
    x = torch.randn(40, 3) * 2 + 5
    adabn_recalibrate(model, x, batch_size=batch_size)
    bn = model[2]
    with torch.no_grad():
        h = model[0](x)
    torch.testing.assert_close(bn.running_mean, h.mean(0), rtol=1e-5, atol=1e-5)
    if batch_size >= len(x):
        torch.testing.assert_close(bn.running_var, h.var(0, unbiased=True), rtol=1e-5, atol=1e-5)
    else:  # mean of the per-batch unbiased variances (4 batches of 10)
        torch.testing.assert_close(bn.running_var, torch.stack([c.var(0) for c in h.split(10)]).mean(0), rtol=1e-5, atol=1e-5)
    assert not model.training and not any(m.training for m in model.modules())
    assert bn.momentum == 0.3
    model.train()
    adabn_recalibrate(model, x, batch_size=batch_size)
    assert all(m.training for m in model.modules())


# --------------------------------------------------------------------------- MCD


def test_mcd_discrepancy_signs():
    torch.manual_seed(0)
    adapter = MCD(feature_dim=4, n_classes=3)
    f_s, f_t, logits_s, logits_t, y_s = _batch()
    adapter.loss(f_s, f_t, logits_s, logits_t, 1.0, y_s=y_s).backward()
    full = [p.grad.clone() for p in adapter.parameters()]
    # The classifiers' gradient from the target part alone: the full one minus the source CE's.
    adapter.zero_grad()
    (F.cross_entropy(adapter.classifier1(f_s), y_s) + F.cross_entropy(adapter.classifier2(f_s), y_s)).backward()
    target_part = [g - p.grad for g, p in zip(full, adapter.parameters())]

    def disc(ft):
        return classifier_discrepancy(adapter.classifier1(ft), adapter.classifier2(ft))

    before = disc(f_t).item()
    with torch.no_grad():
        # A descent step of the classifiers raises the discrepancy ...
        for p, g in zip(adapter.parameters(), target_part):
            p -= 0.5 * g
        assert disc(f_t).item() > before
        for p, g in zip(adapter.parameters(), target_part):
            p += 0.5 * g
        # ... and one of the target features lowers it.
        assert disc(f_t - 0.5 * f_t.grad).item() < before
    # Exactly: f_t's gradient is grl(1) * d(disc)/d(f_t).
    ft = f_t.detach().clone().requires_grad_()
    disc(ft).backward()
    torch.testing.assert_close(f_t.grad, grl_coefficient(1.0) * ft.grad)


def test_mcd_loss_value_and_needs_labels():
    torch.manual_seed(0)
    adapter = MCD(feature_dim=4, n_classes=3, trade_off=0.5)
    f_s, f_t, logits_s, logits_t, y_s = _batch()
    c1, c2 = adapter.classifier1, adapter.classifier2
    expected = F.cross_entropy(c1(f_s), y_s) + F.cross_entropy(c2(f_s), y_s) - 0.5 * classifier_discrepancy(c1(f_t), c2(f_t))
    torch.testing.assert_close(adapter.loss(f_s, f_t, logits_s, logits_t, 0.5, y_s=y_s), expected)
    with pytest.raises(ValueError, match="y_s"):
        adapter.loss(f_s, f_t, logits_s, logits_t, 0.5)
    p = adapter.predict_proba(f_t)
    torch.testing.assert_close(p.sum(1), torch.ones(5))


def test_classifier_discrepancy_by_hand():
    a = torch.tensor([[math.log(3.0), 0.0]])  # (3/4, 1/4)
    b = torch.tensor([[0.0, 0.0]])  # (1/2, 1/2)
    assert classifier_discrepancy(a, b).item() == pytest.approx(0.25)


# --------------------------------------------------------------------------- MDD


def test_modified_log_loss():
    logits = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0], [50.0, 0.0]])
    out = modified_log_loss(logits, torch.tensor([0, 1, 0]))
    torch.testing.assert_close(out, torch.tensor([-math.log(1 / 4), -math.log(1 / 2), -math.log(1e-6)]))


def test_mdd_value_and_signs():
    torch.manual_seed(0)
    adapter = MDD(feature_dim=4, n_classes=3, hidden=8)
    f_s, f_t, logits_s, logits_t, _ = _batch()
    out = adapter.loss(f_s, f_t, logits_s, logits_t, 1.0)
    adv_s, adv_t = adapter.adversary(f_s), adapter.adversary(f_t)
    p_t = adv_t.softmax(1).gather(1, logits_t.argmax(1, keepdim=True)).squeeze(1)
    expected = 4.0 * F.cross_entropy(adv_s, logits_s.argmax(1)) - torch.log(1 - p_t).mean()
    torch.testing.assert_close(out, expected)
    out.backward()
    assert logits_s.grad is None and logits_t.grad is None  # argmax: the main head gets nothing
    # Features get the reversed gradient (coefficient 0.1 * grl(1)) of the adversary's objective.
    fs2 = f_s.detach().clone().requires_grad_()
    (4.0 * F.cross_entropy(adapter.adversary(fs2), logits_s.argmax(1))).backward()
    torch.testing.assert_close(f_s.grad, -grl_coefficient(1.0, max_coeff=0.1) * fs2.grad)


# --------------------------------------------------------------------------- toy adaptation


def _toy(seed: int, n: int = 200):
    """2-D two-class source; the target is the same problem stretched and shifted."""
    g = torch.Generator().manual_seed(seed)
    y_s = torch.randint(2, (n,), generator=g)
    x_s = torch.randn(n, 2, generator=g) * 0.5 + torch.stack([2.0 * y_s - 1.0, torch.zeros(n)], 1)
    y_t = torch.randint(2, (n,), generator=g)
    x_t = (torch.randn(n, 2, generator=g) * 0.5 + torch.stack([2.0 * y_t - 1.0, torch.zeros(n)], 1)) * torch.tensor([1.0, 3.0]) + torch.tensor([0.5, 2.0])
    return x_s, y_s, x_t, y_t


def _train(name: str | None, steps: int = 200, seed: int = 0):
    torch.manual_seed(seed)
    x_s, y_s, x_t, _ = _toy(seed)
    backbone = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 8), nn.Tanh())
    head = nn.Linear(8, 2)
    params = [*backbone.parameters(), *head.parameters()]
    adapter = None
    if name is not None:
        hparams = {"hidden": 16} if name == "dann" else {"trade_off": 10.0}
        adapter = create_adapter(name, feature_dim=8, n_classes=2, **hparams)
        params += list(adapter.parameters())
    # beta1 = 0.5 as for GANs: it damps the adversarial oscillation (DANN passes on seeds 0-9).
    opt = torch.optim.Adam(params, lr=0.01, betas=(0.5, 0.999))
    for step in range(steps):
        i = torch.randint(len(x_s), (64,))
        j = torch.randint(len(x_t), (64,))
        f_s, f_t = backbone(x_s[i]), backbone(x_t[j])
        logits_s, logits_t = head(f_s), head(f_t)
        loss = F.cross_entropy(logits_s, y_s[i])
        if adapter is not None:
            loss = loss + adapter.loss(f_s, f_t, logits_s, logits_t, step / steps, y_s=y_s[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return backbone(x_s), backbone(x_t)


@pytest.mark.parametrize("name", ["deep-coral", "dann"])
def test_adaptation_reduces_domain_gap_on_shifted_toy(name):
    plain_s, plain_t = _train(None)
    adapted_s, adapted_t = _train(name)
    if name == "deep-coral":
        assert coral_distance(adapted_s, adapted_t) < 0.5 * coral_distance(plain_s, plain_t)
    else:  # the pooled-median MMD is scale-free, so shrinking the features cannot fake it
        assert gaussian_mk_mmd(adapted_s, adapted_t) < 0.5 * gaussian_mk_mmd(plain_s, plain_t)
