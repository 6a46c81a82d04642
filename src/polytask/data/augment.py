"""Training-batch augmentation for images, token ids and tabular rows, in tensor ops.

The engine calls an :class:`Augmenter` on each training batch of a task (never on
validation or test) and scores the result with :func:`augmented_loss`, which covers
mixup without the engine knowing which operations ran. Every random draw comes from
the ``torch.Generator`` passed in, never from the global RNG, so a run is reproducible
from its seed; draws are made on the generator's device and moved to the batch, so a
CPU generator gives the same augmentation whether the batch lives on CPU or GPU.
Every operation is vectorized over the batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Literal, NamedTuple, Protocol

import torch
import torch.nn.functional as F
from scipy.special import betaincinv
from torch import Tensor

from polytask.core.errors import ConfigError
from polytask.core.registry import Registry


@dataclass(frozen=True)
class Augmented:
    """An augmented batch.

    Attributes:
        x: the augmented inputs, same shape and dtype as the batch.
        perm: for mixup, row ``i`` of ``x`` mixes original rows ``i`` and ``perm[i]``.
        lam: weight of row ``i`` (and of its label) in the mix; 1.0 without mixup.
    """

    x: Tensor
    perm: Tensor | None = None
    lam: float = 1.0


def augmented_loss(loss_fn: Callable[[Tensor, Tensor], Tensor], out: Tensor, y: Tensor, aug: Augmented) -> Tensor:
    """``loss_fn(out, y)``, or for mixup ``lam * loss_fn(out, y) + (1 - lam) * loss_fn(out, y[perm])``.

    Mixing the two losses rather than the labels works for class indices, binary and
    regression targets alike, and leaves missing-label handling to ``loss_fn``.
    """
    if aug.perm is None:
        return loss_fn(out, y)
    return aug.lam * loss_fn(out, y) + (1.0 - aug.lam) * loss_fn(out, y[aug.perm])


class Augmenter(Protocol):
    """What the engine calls on a training batch."""

    def __call__(self, x: Tensor, gen: torch.Generator) -> Augmented: ...

    def describe(self) -> str: ...


# Random draws on the generator's device (torch requires it), then moved to the batch.
def _rand(shape: tuple[int, ...], gen: torch.Generator, like: Tensor) -> Tensor:
    return torch.rand(shape, generator=gen, device=gen.device).to(like.device)


def _randn(shape: tuple[int, ...], gen: torch.Generator, like: Tensor) -> Tensor:
    return torch.randn(shape, generator=gen, device=gen.device).to(like.device, like.dtype)


def _check_batch(x: Tensor, kind: str, ndim: int, floating: bool) -> None:
    if x.ndim != ndim or x.is_floating_point() != floating:
        want = "floating" if floating else "integer"
        raise ValueError(f"{kind} augmentation expects a {ndim}-d {want} batch, got shape {tuple(x.shape)} of {x.dtype}")


def shift_images(x: Tensor, dy: Tensor, dx: Tensor) -> Tensor:
    """Translate each image ``i`` of ``x`` [N, C, H, W] down ``dy[i]`` and right ``dx[i]`` whole pixels, filling with zeros.

    A gather rather than ``grid_sample``: integer shifts stay exact, with no interpolation blur.
    """
    n, c, h, w = x.shape
    rows = torch.arange(h, device=x.device) - dy.to(x.device)[:, None]  # source row of each output row, [N, H]
    cols = torch.arange(w, device=x.device) - dx.to(x.device)[:, None]  # [N, W]
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
    src = rows.clamp(0, h - 1)[:, :, None] * w + cols.clamp(0, w - 1)[:, None, :]
    moved = x.reshape(n, c, h * w).gather(2, src.reshape(n, 1, h * w).expand(n, c, h * w)).view(n, c, h, w)
    return torch.where(inside[:, None], moved, torch.zeros((), dtype=x.dtype, device=x.device))


def rotate_images(x: Tensor, degrees: Tensor) -> Tensor:
    """Rotate each image ``i`` of ``x`` [N, C, H, W] by ``degrees[i]`` about its centre (bilinear, zero fill).

    Positive angles turn counter-clockwise as displayed (row 0 on top), like ``torch.rot90``.
    """
    n, _, h, w = x.shape
    a = torch.deg2rad(degrees.to(x.device, x.dtype))
    cos, sin = torch.cos(a), torch.sin(a)
    # affine_grid works in coordinates normalized to [-1, 1] per axis; conjugating the
    # rotation by the pixel scale keeps angles true on non-square images.
    theta = torch.zeros(n, 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin * h / w
    theta[:, 1, 0], theta[:, 1, 1] = sin * w / h, cos
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class _Check(NamedTuple):
    """A test an option value must pass, and how to say what was expected."""

    ok: Callable[[Any], bool]
    expected: str


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


_BOOL = _Check(lambda v: isinstance(v, bool), "true or false")
_STD = _Check(lambda v: _is_number(v) and v >= 0, "a standard deviation >= 0")
_PROB = _Check(lambda v: _is_number(v) and 0 <= v < 1, "a fraction in [0, 1)")

AUGMENTERS: Registry[type] = Registry("augmentation kind")


def register_augmentation(name: str):
    """Decorator registering an augmentation kind under ``name``; a duplicate name raises."""
    return AUGMENTERS.register(name)


@register_augmentation("image")
@dataclass(frozen=True)
class ImageAugmenter:
    """Per-sample flips, integer shift, rotation, then gaussian noise, on [N, C, H, W] floats.

    Flips are off by default because they change meaning for many tasks (digits,
    letters, left/right); turn them on only where a mirrored input keeps its label.

    Attributes:
        shift: translate by a uniform whole number of pixels in [-shift, shift] per axis.
        rotate: rotate by a uniform angle in [-rotate, rotate] degrees.
        hflip, vflip: mirror left-right / top-bottom with probability 1/2.
        noise: standard deviation of added gaussian noise (inputs are scaled by their max).
    """

    shift: int = 0
    rotate: float = 0.0
    hflip: bool = False
    vflip: bool = False
    noise: float = 0.0

    CHECKS: ClassVar[dict[str, _Check]] = {
        "shift": _Check(lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "a whole number of pixels >= 0"),
        "rotate": _Check(lambda v: _is_number(v) and 0 <= v <= 180, "between 0 and 180 degrees"),
        "hflip": _BOOL,
        "vflip": _BOOL,
        "noise": _STD,
    }

    def __call__(self, x: Tensor, gen: torch.Generator) -> Augmented:
        _check_batch(x, "image", 4, floating=True)
        n = len(x)
        if self.hflip:
            x = torch.where(_rand((n, 1, 1, 1), gen, x) < 0.5, x.flip(-1), x)
        if self.vflip:
            x = torch.where(_rand((n, 1, 1, 1), gen, x) < 0.5, x.flip(-2), x)
        if self.shift:
            d = torch.randint(-self.shift, self.shift + 1, (2, n), generator=gen, device=gen.device)
            x = shift_images(x, d[0], d[1])
        if self.rotate:
            x = rotate_images(x, (2 * _rand((n,), gen, x) - 1) * self.rotate)
        if self.noise:
            x = x + self.noise * _randn(tuple(x.shape), gen, x)
        return Augmented(x)

    def describe(self) -> str:
        parts = [f"shift ±{self.shift} px" if self.shift else "", f"rotate ±{self.rotate:g}°" if self.rotate else ""]
        parts += ["hflip" if self.hflip else "", "vflip" if self.vflip else "", f"noise {self.noise:g}" if self.noise else ""]
        return ", ".join(p for p in parts if p)


@register_augmentation("text")
@dataclass(frozen=True)
class TextAugmenter:
    """Masking of token ids [N, L]: random tokens and one contiguous span per sequence.

    Masked tokens are replaced by ``mask_id`` (the vocabulary's mask or unknown id), not
    removed: removal would shift every later position and change the sequence length,
    while replacement keeps shapes and positions and matches BERT-style masking.
    Tokens equal to ``pad_id`` or in ``keep_ids`` (CLS, SEP, ...) are never changed.

    Attributes:
        pad_id: padding id.
        mask_id: id written over masked tokens.
        token_dropout: each maskable token is masked with this probability.
        span_mask: per sequence, mask ``round(span_mask * m)`` consecutive maskable tokens
            at a uniform start, ``m`` being its number of maskable tokens. The span is
            contiguous in that order, so it steps over pad and kept ids (a SEP between a
            sentence pair).
        keep_ids: ids never masked.
    """

    pad_id: int
    mask_id: int
    token_dropout: float = 0.0
    span_mask: float = 0.0
    keep_ids: frozenset[int] = frozenset()

    CHECKS: ClassVar[dict[str, _Check]] = {
        "token_dropout": _PROB,
        "span_mask": _PROB,
        "keep_ids": _Check(
            lambda v: isinstance(v, list | tuple | set | frozenset) and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in v),
            "a list of token ids >= 0",
        ),
    }

    def __call__(self, x: Tensor, gen: torch.Generator) -> Augmented:
        _check_batch(x, "text", 2, floating=False)
        maskable = x != self.pad_id
        if self.keep_ids:
            maskable &= ~torch.isin(x, torch.tensor(sorted(self.keep_ids), dtype=x.dtype, device=x.device))
        masked = torch.zeros_like(maskable)
        if self.span_mask:
            m = maskable.sum(1)
            rank = maskable.cumsum(1) - 1  # position of each maskable token among its row's maskable tokens
            length = torch.floor(self.span_mask * m + 0.5).long()  # round half up
            # Uniform in [0, m - length]; the clamp guards against float32 rounding u * (m - length + 1) up.
            start = torch.minimum((_rand((len(x),), gen, x) * (m - length + 1)).long(), m - length)
            masked |= maskable & (rank >= start[:, None]) & (rank < (start + length)[:, None])
        if self.token_dropout:
            masked |= maskable & (_rand(tuple(x.shape), gen, x) < self.token_dropout)
        return Augmented(torch.where(masked, torch.full_like(x, self.mask_id), x))

    def describe(self) -> str:
        parts = [f"token dropout {self.token_dropout:g}" if self.token_dropout else "", f"span mask {self.span_mask:g}" if self.span_mask else ""]
        return ", ".join(p for p in parts if p) + f" (mask id {self.mask_id})"


@register_augmentation("tabular")
@dataclass(frozen=True)
class TabularAugmenter:
    """Gaussian noise, then mixup (Zhang et al. 2018), on standardized rows [N, d].

    Mixup draws one ``lam ~ Beta(mixup, mixup)`` per batch as the inverse Beta CDF
    (``scipy.special.betaincinv``) of one uniform draw from the generator: torch's Beta and
    Gamma samplers ignore generators and use the global RNG.

    Attributes:
        noise: standard deviation of added gaussian noise, in units of a feature's std.
        mixup: alpha of the Beta(alpha, alpha) mixing weight; 0 turns mixup off.
    """

    noise: float = 0.0
    mixup: float = 0.0

    CHECKS: ClassVar[dict[str, _Check]] = {
        "noise": _STD,
        "mixup": _Check(lambda v: _is_number(v) and v >= 0, "a Beta alpha >= 0 (0 turns it off)"),
    }

    def __call__(self, x: Tensor, gen: torch.Generator) -> Augmented:
        _check_batch(x, "tabular", 2, floating=True)
        if self.noise:
            x = x + self.noise * _randn(tuple(x.shape), gen, x)
        if not self.mixup:
            return Augmented(x)
        u = float(torch.rand((), generator=gen, device=gen.device))
        lam = float(betaincinv(self.mixup, self.mixup, u))
        perm = torch.randperm(len(x), generator=gen, device=gen.device).to(x.device)
        return Augmented(lam * x + (1.0 - lam) * x[perm], perm, lam)

    def describe(self) -> str:
        parts = [f"noise {self.noise:g}" if self.noise else "", f"mixup α={self.mixup:g}" if self.mixup else ""]
        return ", ".join(p for p in parts if p)


def build_augmenter(kind: Literal["image", "text", "tabular"], options: dict[str, Any], pad_id: int = 0, mask_id: int | None = None) -> Augmenter | None:
    """The augmenter of ``kind`` configured by ``options``, or None when no operation is on.

    Args:
        kind: ``image``, ``text`` or ``tabular``: the kind of the task's inputs.
        options: option name -> value; names and ranges are those of the kind's class.
        pad_id: text padding id, never masked.
        mask_id: text id written over masked tokens; required when a text option is on.

    Raises:
        ConfigError: (a ``ValueError``) naming the unknown kind or option, or the option whose value is out of range.
    """
    cls = AUGMENTERS.get_item(kind)
    for name, value in options.items():
        if name not in cls.CHECKS:
            raise ConfigError(f"unknown {kind} augment option '{name}' (known: {', '.join(cls.CHECKS)})")
        if not cls.CHECKS[name].ok(value):
            raise ConfigError(f"augment option '{name}' must be {cls.CHECKS[name].expected}, got {value!r}")
    values = dict(options)
    if "keep_ids" in values:
        values["keep_ids"] = frozenset(values["keep_ids"])
    ops = [f.name for f in fields(cls) if f.name not in ("pad_id", "mask_id", "keep_ids")]
    enabled = [name for name in ops if values.get(name)]
    if not enabled:
        return None
    if kind != "text":
        return cls(**values)
    if mask_id is None or mask_id == pad_id:
        raise ConfigError(f"augment option '{enabled[0]}' needs a mask_id (the vocabulary's mask or unknown id) other than pad_id {pad_id}, got {mask_id}")
    return cls(pad_id=pad_id, mask_id=mask_id, **values)
