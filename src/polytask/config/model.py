"""The model: the backbone, its options, and how tasks share it."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from polytask.config.base import Frozen, WithSections


class MLPConfig(Frozen):
    """Fully connected backbone: ``hidden`` layer widths, ReLU, dropout."""

    hidden: list[int] = Field(default_factory=lambda: [256, 256], min_length=1)
    dropout: float = Field(0.1, ge=0, lt=1)


class CNNConfig(Frozen):
    """Convolutional backbone: conv-BN-ReLU-maxpool stages of ``channels``, then a ``hidden`` layer."""

    channels: list[int] = Field(default_factory=lambda: [32, 64], min_length=1)
    hidden: int = Field(128, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)


class GRUConfig(Frozen):
    """Text backbone trained from scratch: hashed word ids, embedding, bidirectional GRU."""

    vocab_size: int = Field(32768, ge=16)
    embedding: int = Field(64, ge=1)
    hidden: int = Field(64, ge=1)
    layers: int = Field(1, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)


class TextConfig(Frozen):
    """How every text backbone tokenizes: at most ``max_length`` tokens per text."""

    max_length: int = Field(64, ge=2)


class ImageNetConfig(Frozen):
    """ImageNet backbones (``efficientnet-lite0``, ``timm:``) upsample images to ``resize``."""

    resize: int | None = Field(64, ge=16)


class ModelConfig(WithSections):
    """Shared layers (the backbone), how tasks share them, and the heads.

    Attributes:
        backbone: registered backbone name (``mlp``, ``cnn``, ``gru`` for text;
            ``efficientnet-lite0``, ``minilm`` with pretrained weights) or ``hf:<name>``,
            ``timm:<name>``, ``run:<path>`` (:mod:`polytask.methods.backbones`). A
            pretrained one is what ``feature-extraction`` and ``fine-tune`` start from;
            ``scratch`` trains the same architecture from a random initialization.
        image_size: resize every image task to this square size, so datasets of
            different sizes can share one backbone.
        architecture: how the ``mtl`` strategy shares layers (``hard``: one backbone and a
            linear head per task). Its options go in a section named after it, e.g.
            ``architecture: mmoe`` with ``mmoe: {experts: 4}``. Single-task strategies
            always use one backbone and one head.
    """

    section_kind: ClassVar[str] = "architecture options"
    backbone: str = "mlp"
    image_size: int | None = Field(None, ge=4)
    architecture: str = "hard"
    mlp: MLPConfig = MLPConfig()
    cnn: CNNConfig = CNNConfig()
    gru: GRUConfig = GRUConfig()
    text: TextConfig = TextConfig()
    imagenet: ImageNetConfig = ImageNetConfig()

    def architecture_options(self, name: str | None = None) -> dict:
        """Options given for architecture ``name`` (default: the configured one)."""
        return self.hparams(name or self.architecture)
