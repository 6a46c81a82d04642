"""Batch augmentation: reproducibility, exact geometry, masking rules, mixup, option checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from polytask.core.errors import ConfigError
from polytask.data.augment import (
    AUGMENTERS,
    Augmented,
    ImageAugmenter,
    TabularAugmenter,
    TextAugmenter,
    augmented_loss,
    build_augmenter,
    rotate_images,
    shift_images,
)

PAD, MASK, CLS, SEP = 0, 1, 2, 3


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def tokens(n: int = 64, length: int = 40, seed: int = 0) -> torch.Tensor:
    """CLS w... SEP then padding, with a random number of words per row."""
    g = gen(seed)
    x = torch.full((n, length), PAD)
    words = torch.randint(4, 30, (n,), generator=g)
    for i, k in enumerate(words.tolist()):
        x[i, 0], x[i, k + 1] = CLS, SEP
        x[i, 1 : k + 1] = torch.randint(4, 100, (k,), generator=g)
    return x


EXAMPLES = {
    "image": ({"shift": 2, "rotate": 15.0, "hflip": True, "vflip": True, "noise": 0.1}, lambda: torch.rand(8, 3, 12, 10, generator=gen(9))),
    "text": ({"token_dropout": 0.2, "span_mask": 0.3, "keep_ids": [CLS, SEP]}, tokens),
    "tabular": ({"noise": 0.1, "mixup": 0.4}, lambda: torch.randn(16, 5, generator=gen(9))),
}


@pytest.mark.parametrize("kind", AUGMENTERS.names())
def test_same_seed_same_batch_and_different_seed_different_batch(kind):
    options, make = EXAMPLES[kind]
    aug, x = build_augmenter(kind, options, pad_id=PAD, mask_id=MASK), make()
    a, b, c = aug(x, gen(1)), aug(x, gen(1)), aug(x, gen(2))
    assert torch.equal(a.x, b.x) and a.lam == b.lam
    assert not torch.equal(a.x, c.x)
    assert a.x.shape == x.shape and a.x.dtype == x.dtype


def test_global_rng_is_neither_used_nor_advanced():
    x = torch.rand(4, 1, 6, 6)
    aug = build_augmenter("image", {"shift": 1, "rotate": 5.0, "noise": 0.1})
    torch.manual_seed(0)
    first = aug(x, gen(3)).x
    state = torch.get_rng_state()
    torch.manual_seed(123)
    assert torch.equal(aug(x, gen(3)).x, first)
    torch.manual_seed(0)
    aug(x, gen(3))
    assert torch.equal(torch.get_rng_state(), state)


def test_shift_images_matches_a_hand_shifted_4x4():
    x = torch.arange(1.0, 17.0).view(1, 1, 4, 4)
    down1_left2 = torch.tensor([[0, 0, 0, 0], [3, 4, 0, 0], [7, 8, 0, 0], [11, 12, 0, 0]], dtype=torch.float32)
    assert torch.equal(shift_images(x, torch.tensor([1]), torch.tensor([-2]))[0, 0], down1_left2)
    up2 = torch.tensor([[9, 10, 11, 12], [13, 14, 15, 16], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.float32)
    assert torch.equal(shift_images(x, torch.tensor([-2]), torch.tensor([0]))[0, 0], up2)


def test_shift_moves_each_image_by_whole_pixels_within_range_and_fills_zeros():
    k = 2
    x = torch.rand(32, 2, 5, 5, generator=gen(0)) + 1  # no zeros, so a zero can only be fill
    out = ImageAugmenter(shift=k)(x, gen(4)).x
    offsets = [(dy, dx) for dy in range(-k, k + 1) for dx in range(-k, k + 1)]
    found = set()
    for i in range(len(x)):
        matches = [d for d in offsets if torch.equal(out[i], shift_images(x[i : i + 1], torch.tensor([d[0]]), torch.tensor([d[1]]))[0])]
        assert len(matches) == 1
        found.add(matches[0])
        dy, dx = matches[0]
        assert int((out[i] == 0).sum()) == 2 * (5 * 5 - (5 - abs(dy)) * (5 - abs(dx)))
    assert len(found) > 5  # per sample, not one shift for the batch


@pytest.mark.parametrize("size", [(5, 5), (6, 6)])
def test_rotate_by_90_degrees_equals_rot90(size):
    x = torch.rand(3, 2, *size, generator=gen(0))
    assert torch.allclose(rotate_images(x, torch.full((3,), 90.0)), torch.rot90(x, 1, dims=(2, 3)), atol=1e-5)
    assert torch.allclose(rotate_images(x, torch.full((3,), -90.0)), torch.rot90(x, -1, dims=(2, 3)), atol=1e-5)
    assert torch.allclose(rotate_images(x, torch.zeros(3)), x, atol=1e-6)


def test_rotation_keeps_angles_on_non_square_images():
    x = torch.zeros(1, 1, 5, 9)
    x[0, 0, 2, 3:6] = 1.0  # horizontal bar through the centre
    turned = rotate_images(x, torch.tensor([90.0]))[0, 0]
    assert torch.allclose(turned[1:4, 4], torch.ones(3), atol=1e-5)  # now vertical, same length
    assert float(turned.sum()) == pytest.approx(3.0, abs=1e-4)


def test_rotate_draws_a_different_angle_per_sample_within_range():
    x = torch.zeros(16, 1, 9, 9)
    x[:, 0, 4, 4:] = 1.0  # a ray from the centre to the right
    out = ImageAugmenter(rotate=30.0)(x, gen(0)).x
    upper = out[:, 0, :4].sum(dim=(1, 2))  # rays turned counter-clockwise rise into the top half
    assert (upper > 0.1).any() and (upper < 0.1).any()
    assert float(out[:, 0, :, :3].sum()) == pytest.approx(0.0, abs=1e-3)  # nothing swings past ±90° (column 3 only blurs the centre)


def test_flips_only_when_enabled():
    x = torch.rand(64, 1, 4, 4, generator=gen(0))
    assert torch.equal(ImageAugmenter()(x, gen(0)).x, x)
    h = ImageAugmenter(hflip=True)(x, gen(0)).x
    flipped = torch.tensor([torch.equal(h[i], x[i].flip(-1)) for i in range(len(x))])
    kept = torch.tensor([torch.equal(h[i], x[i]) for i in range(len(x))])
    assert bool((flipped ^ kept).all()) and 16 < int(flipped.sum()) < 48
    v = ImageAugmenter(vflip=True)(x, gen(0)).x
    assert all(torch.equal(v[i], x[i].flip(-2)) or torch.equal(v[i], x[i]) for i in range(len(x)))
    assert not torch.equal(v, x)


@pytest.mark.parametrize(("kind", "shape"), [("image", (64, 3, 16, 16)), ("tabular", (4000, 12))])
def test_noise_has_the_requested_std(kind, shape):
    x = torch.randn(*shape, generator=gen(0))
    noise = build_augmenter(kind, {"noise": 0.3})(x, gen(1)).x - x
    assert float(noise.mean()) == pytest.approx(0.0, abs=0.01)
    assert float(noise.std()) == pytest.approx(0.3, rel=0.02)


def test_text_never_touches_pad_or_kept_ids_and_masks_the_requested_fraction():
    x = tokens(n=400, length=40)
    out = TextAugmenter(PAD, MASK, token_dropout=0.25, keep_ids=frozenset({CLS, SEP}))(x, gen(0)).x
    protected = (x == PAD) | (x == CLS) | (x == SEP)
    assert torch.equal(out[protected], x[protected])
    changed = out != x
    assert bool((out[changed] == MASK).all())
    assert float(changed[~protected].float().mean()) == pytest.approx(0.25, abs=0.015)


def test_span_mask_is_one_contiguous_span_of_the_requested_length():
    x = tokens(n=200, length=40)
    out = TextAugmenter(PAD, MASK, span_mask=0.3, keep_ids=frozenset({CLS, SEP}))(x, gen(0)).x
    starts = []
    for row_in, row_out in zip(x, out):
        words = int(((row_in != PAD) & (row_in != CLS) & (row_in != SEP)).sum())
        where = torch.nonzero(row_out != row_in).flatten()
        assert len(where) == int(0.3 * words + 0.5)
        assert torch.equal(where, torch.arange(int(where[0]), int(where[0]) + len(where)))
        assert int(where[0]) >= 1 and int(where[-1]) <= words  # inside CLS ... SEP
        assert bool((row_out[where] == MASK).all())
        starts.append(int(where[0]))
    assert len(set(starts)) > 10  # random start per sequence


def test_span_steps_over_kept_ids_and_ignores_left_padding():
    x = torch.tensor([[PAD, PAD, 10, 11, SEP, 12, 13, 14]])
    spans = {tuple(TextAugmenter(PAD, MASK, span_mask=0.8, keep_ids=frozenset({SEP}))(x, gen(s)).x[0].tolist()) for s in range(20)}
    assert spans == {(PAD, PAD, MASK, MASK, SEP, MASK, MASK, 14), (PAD, PAD, 10, MASK, SEP, MASK, MASK, MASK)}


def test_mixup_mixes_rows_exactly_and_the_loss_mixes_labels():
    x = torch.randn(10, 4, generator=gen(0))
    y = torch.arange(10) % 3
    aug = TabularAugmenter(mixup=1.0)(x, gen(5))
    assert aug.perm is not None and sorted(aug.perm.tolist()) == list(range(10)) and 0 < aug.lam < 1
    assert torch.equal(aug.x, aug.lam * x + (1 - aug.lam) * x[aug.perm])
    out = torch.randn(10, 3, generator=gen(1))
    by_hand = aug.lam * F.cross_entropy(out, y) + (1 - aug.lam) * F.cross_entropy(out, y[aug.perm])
    assert torch.equal(augmented_loss(F.cross_entropy, out, y, aug), by_hand)
    assert torch.equal(augmented_loss(F.cross_entropy, out, y, Augmented(x)), F.cross_entropy(out, y))


def test_mixup_lam_follows_beta_alpha_alpha():
    x = torch.zeros(2, 1)
    uniform = torch.tensor([TabularAugmenter(mixup=1.0)(x, gen(s)).lam for s in range(600)])
    assert float(uniform.mean()) == pytest.approx(0.5, abs=0.03)
    assert float(uniform.var()) == pytest.approx(1 / 12, abs=0.01)  # Beta(1, 1) is uniform
    u_shaped = torch.tensor([TabularAugmenter(mixup=0.2)(x, gen(s)).lam for s in range(600)])
    assert float(u_shaped.mean()) == pytest.approx(0.5, abs=0.05)
    assert float(((u_shaped > 0.1) & (u_shaped < 0.9)).float().mean()) < 0.45  # mass near 0 and 1


def test_builder_returns_none_without_operations_and_describes_what_it_does():
    assert build_augmenter("image", {}) is None
    assert build_augmenter("image", {"hflip": False, "noise": 0}) is None
    assert build_augmenter("text", {"keep_ids": [CLS]}) is None
    assert build_augmenter("image", {"shift": 2, "rotate": 10, "noise": 0.05}).describe() == "shift ±2 px, rotate ±10°, noise 0.05"
    assert build_augmenter("tabular", {"mixup": 0.2}).describe() == "mixup α=0.2"
    text = build_augmenter("text", {"span_mask": 0.15, "keep_ids": [CLS, SEP]}, pad_id=PAD, mask_id=MASK)
    assert text == TextAugmenter(PAD, MASK, span_mask=0.15, keep_ids=frozenset({CLS, SEP}))
    assert text.describe() == "span mask 0.15 (mask id 1)"


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        ("image", {"rotate": 400}, "augment option 'rotate' must be between 0 and 180 degrees, got 400"),
        ("image", {"shift": 1.5}, "augment option 'shift' must be a whole number of pixels >= 0, got 1.5"),
        ("image", {"hflip": 1}, "augment option 'hflip' must be true or false, got 1"),
        ("image", {"noise": -0.1}, "augment option 'noise' must be a standard deviation >= 0, got -0.1"),
        ("image", {"mixup": 0.2}, "unknown image augment option 'mixup' (known: shift, rotate, hflip, vflip, noise)"),
        ("text", {"token_dropout": 1.0}, "augment option 'token_dropout' must be a fraction in [0, 1), got 1.0"),
        ("text", {"keep_ids": [2, -1]}, "augment option 'keep_ids' must be a list of token ids >= 0, got [2, -1]"),
        ("text", {"span_mask": 0.1}, "augment option 'span_mask' needs a mask_id (the vocabulary's mask or unknown id) other than pad_id 0, got None"),
        ("tabular", {"mixup": float("nan")}, "augment option 'mixup' must be a Beta alpha >= 0 (0 turns it off), got nan"),
        ("audio", {"noise": 0.1}, "unknown augmentation kind 'audio' (known: image, text, tabular)"),
    ],
)
def test_bad_options_raise_one_line_value_errors(kind, options, message):
    with pytest.raises(ValueError) as err:
        build_augmenter(kind, options)
    assert isinstance(err.value, ConfigError) and str(err.value) == message


def test_wrong_batch_kind_is_refused():
    with pytest.raises(ValueError, match="text augmentation expects a 2-d integer batch"):
        TextAugmenter(PAD, MASK, token_dropout=0.1)(torch.rand(2, 5), gen(0))
