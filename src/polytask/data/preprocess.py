"""What a run did to its inputs before the backbone read them, kept so a saved model can do
the same to new inputs.

:func:`polytask.data.prepare.prepare_task` fits the scaling on a run's training rows; the
:class:`InputTransform` it returns with the tensors records that scaling (and the rest:
crop, resize, table encoders, token ids) as plain numbers that go to a model directory's
JSON and back. Applied to inputs as they are loaded (``TaskData.x_*`` rows: images as
pixels, a table's rows laid out by its :class:`~polytask.data.tabular.TableLayout`, texts
as strings), it gives the tensors the run's model read, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from polytask.core.errors import ConfigError
from polytask.data.arrays import is_text
from polytask.data.tabular import TableEncoder, TableLayout, layout_from_record, layout_record, numeric_rows

KINDS = ("image", "numeric", "table", "text")


@dataclass(frozen=True)
class InputTransform:
    """A task's input preprocessing, fitted on one run's training rows.

    Attributes:
        kind: ``image`` (pixels divided by the training maximum), ``numeric`` (columns
            standardized), ``table`` (a table's encoders, then its numeric columns
            standardized) or ``text`` (token ids of the backbone's tokenizer).
        shape: one sample as loaded, before any resizing (``()`` for text).
        image_size: images are resized to this side (None: kept).
        crop: pixels removed from every border of an image before resizing (a data
            source's ``crop``).
        scale: the divisor of image values.
        mean, std: per standardized column (the table's numeric columns, or every column).
        encoder: a table's fitted encoders (its layout included).
        columns: the feature columns of a table file in order, or the text column.
        tokenizer: for text, the backbone whose tokenizer made the ids, and its options.
        decode_size: image files were resized to this side when decoded (a source's ``size``).
    """

    kind: str
    shape: tuple[int, ...] = ()
    image_size: int | None = None
    crop: int = 0
    scale: float | None = None
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    encoder: TableEncoder | None = None
    columns: tuple[str, ...] | None = None
    tokenizer: dict[str, Any] | None = None
    decode_size: int | None = None

    def with_source(
        self, columns: tuple[str, ...] | None = None, crop: int = 0, tokenizer: dict[str, Any] | None = None, decode_size: int | None = None
    ) -> InputTransform:
        """The same transform with what the data source adds: its columns, crop, tokenizer, decoding size."""
        return replace(self, columns=tuple(columns) if columns else self.columns, crop=crop, tokenizer=tokenizer or self.tokenizer, decode_size=decode_size)

    @property
    def raw_shape(self) -> tuple[int, ...]:
        """One sample as a user passes it: an image before the crop."""
        if self.kind != "image" or not self.crop:
            return self.shape
        *lead, h, w = self.shape
        return (*lead, h + 2 * self.crop, w + 2 * self.crop)

    def __call__(self, x: np.ndarray | list[str], encode: Callable[[list[str]], torch.Tensor] | None = None) -> torch.Tensor:
        """The tensor the model reads for inputs ``x`` as loaded (``encode``: the tokenizer, for text).

        Raises:
            ConfigError: inputs of another shape or type than the model was trained on.
        """
        if self.kind == "text":
            if encode is None:
                raise ConfigError("text inputs need the model's tokenizer")
            return encode([str(s) for s in x])
        x = np.asarray(x)
        if x.dtype == object or not np.issubdtype(x.dtype, np.number) and x.dtype != np.bool_:
            raise ConfigError(f"inputs of dtype {x.dtype}: expected numbers of shape (N, {', '.join(map(str, self.raw_shape))})")
        if self.kind == "image":
            return self._image(x)
        lay = self.encoder.layout if self.encoder is not None else None
        if lay is not None and x.ndim == 2 and x.shape[1] == len(lay.numeric) != lay.width and not lay.onehot and not lay.coded:
            x = numeric_rows(lay, np.asarray(x, dtype=np.float32))  # an array's columns, before its missing-value indicators
        if tuple(x.shape[1:]) != self.shape or x.ndim != 2:
            raise ConfigError(f"inputs of shape {tuple(x.shape)}: expected (N, {self.shape[0]}) {'table rows' if self.kind == 'table' else 'feature columns'}")
        x = np.asarray(x, dtype=np.float32)
        return self.scaled(torch.as_tensor(self.encoder.transform(x) if self.kind == "table" else x))

    def scaled(self, t: torch.Tensor) -> torch.Tensor:
        """Tensor ``t`` (images resized, a table's rows encoded, token ids) scaled as the
        run's training rows were: the last step of :meth:`__call__`."""
        if self.kind == "image":
            return t / torch.tensor(self.scale, dtype=torch.float32)
        if self.kind == "numeric":
            return (t - torch.as_tensor(self.mean)) / torch.as_tensor(self.std)
        if self.kind == "table" and len(self.mean):
            n = len(self.mean)
            t[:, :n] = (t[:, :n] - torch.as_tensor(self.mean)) / torch.as_tensor(self.std)
        return t

    def _image(self, x: np.ndarray) -> torch.Tensor:
        raw = self.raw_shape
        if x.ndim == len(raw) + 2 and x.shape[1] == 1 and len(raw) == 2:
            x = x[:, 0]  # grey images with a channel axis, for a model trained on them without one
        fits = {raw, self.shape} | ({raw[1:], self.shape[1:]} if len(raw) == 3 and raw[0] == 1 else set())
        if tuple(x.shape[1:]) not in fits:
            raise ConfigError(f"images of shape {tuple(x.shape[1:])}: expected {'x'.join(map(str, raw))} (as the model was trained on)")
        if self.crop and tuple(x.shape[-2:]) != self.shape[-2:]:
            c = self.crop  # images as users have them; ones already cropped (a source with crop, as loaded) are kept
            x = x[..., c:-c, c:-c]
        return self.scaled(as_model_input(np.asarray(x, dtype=np.float32), self.image_size))

    def to_record(self) -> dict[str, Any]:
        """Plain JSON data (:meth:`from_record` reads it back, the same numbers)."""
        enc = self.encoder
        return {
            "kind": self.kind,
            "shape": list(self.shape),
            "image_size": self.image_size,
            "crop": self.crop,
            "scale": self.scale,
            "mean": _floats(self.mean),
            "std": _floats(self.std),
            "columns": list(self.columns) if self.columns else None,
            "tokenizer": self.tokenizer,
            "decode_size": self.decode_size,
            "table": None
            if enc is None
            else {
                "layout": layout_record(enc.layout),
                "fill_numeric": _floats(enc.fill_numeric),
                "fill_codes": _floats(enc.fill_codes),
                "known": None if enc.known is None else [k.tolist() for k in enc.known],
            },
        }

    @classmethod
    def from_record(cls, r: dict[str, Any]) -> InputTransform:
        if r.get("kind") not in KINDS:
            raise ConfigError(f"input transform of kind {r.get('kind')!r}: expected one of {', '.join(KINDS)}")
        table = r.get("table")
        encoder = None
        if table is not None:
            encoder = TableEncoder(
                layout_from_record(table["layout"]),
                _array(table["fill_numeric"]),
                _array(table["fill_codes"]),
                None if table["known"] is None else [np.asarray(k, dtype=np.int64) for k in table["known"]],
            )
        return cls(
            r["kind"],
            tuple(r["shape"]),
            r["image_size"],
            r["crop"],
            r["scale"],
            _array(r["mean"], np.float32),
            _array(r["std"], np.float32),
            encoder,
            tuple(r["columns"]) if r["columns"] else None,
            r["tokenizer"],
            r.get("decode_size"),
        )


def _floats(a: np.ndarray | None) -> list[float] | None:
    # float() of a float32 is exact in a float64, and JSON keeps every digit of a float64 (repr).
    return None if a is None else [float(v) for v in np.asarray(a).ravel()]


def _array(v: list[float] | None, dtype=np.float64) -> np.ndarray | None:
    return None if v is None else np.asarray(v, dtype=dtype)


def as_model_input(x: np.ndarray, image_size: int | None, encode: Callable[[list[str]], torch.Tensor] | None = None) -> torch.Tensor:
    """The tensor a backbone reads.

    Numbers become a float tensor, images get a channel axis and are resized to
    ``image_size`` when given; text is tokenized by ``encode`` (the text backbone's
    tokenizer) into token ids.
    """
    if is_text(x):
        if encode is None:
            raise ConfigError("text inputs need a text backbone (gru, minilm or hf:<name>) to tokenize them")
        return encode(list(x))
    t = torch.as_tensor(np.asarray(x, dtype=np.float32))
    if t.ndim == 3:
        t = t.unsqueeze(1)
    if t.ndim == 4 and image_size is not None and tuple(t.shape[-2:]) != (image_size, image_size):
        shrink = image_size < max(t.shape[-2:])
        t = F.interpolate(t, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=shrink)
    return t


def image_transform(shape: tuple[int, ...], image_size: int | None, scale: float) -> InputTransform:
    return InputTransform("image", tuple(shape), image_size=image_size, scale=float(scale))


def table_transform(layout: TableLayout, encoder: TableEncoder, mean: np.ndarray, std: np.ndarray) -> InputTransform:
    return InputTransform("table", (layout.width,), mean=np.asarray(mean, np.float32), std=np.asarray(std, np.float32), encoder=encoder)


def numeric_transform(width: int, mean: np.ndarray, std: np.ndarray) -> InputTransform:
    return InputTransform("numeric", (int(width),), mean=np.asarray(mean, np.float32), std=np.asarray(std, np.float32))
