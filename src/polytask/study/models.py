"""The models a study's runs start from: backbones, tokenizers, augmenters, saved layers.

:class:`StudyModels` is the model half of :class:`polytask.study.runner.Study`: it builds
the study's backbone (a registered name, a pretrained one, or the user's own module), the
tokenizer text tasks are encoded with, each task's augmenter, the backbone a transfer
strategy starts from (a named pretrained one, or the in-study pretraining that
:meth:`~polytask.study.runner.Study._pretrained_cache` trains and caches), each
strategy's preflight check, and saves a run's trained shared layers.

Tables with code columns (categorical columns with many levels, :mod:`polytask.data.tabular`):
input shapes stay plain tuples; the codes' embeddings are a backbone option.
:meth:`StudyModels.new_backbone` passes ``embeddings`` (the layout's ``(levels + 1, dim)``
pairs) to a builder that takes that option (``mlp``), for inputs of a shape whose tasks
have code columns (:meth:`~polytask.study.inputs.StudyInputs._check_shapes` checks that
they agree). Any other backbone (``run:`` of a model saved without embeddings, a user's
module or registered builder without an ``embeddings`` option) reads the codes as plain
numbers: the study says so in one note. A saved or pretrained backbone that embeds other
code columns than the tasks have is refused in one line.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from polytask.config import SSLSourceConfig, StudyConfig
from polytask.core.errors import ConfigError, PolytaskWarning
from polytask.core.tasks import Task
from polytask.data.arrays import TEXT_SHAPE, is_text
from polytask.data.augment import build_augmenter
from polytask.methods.architectures.multitask import FeatureBackbone, MultiTaskModel
from polytask.methods.backbones import builder_options, create_backbone, from_user_module, is_pretrained
from polytask.methods.backbones.run import save_backbone
from polytask.methods.backbones.tokenizers import text_encoder
from polytask.strategies import Preflight, check_strategy, transfer_source, uses_transfer_source
from polytask.study.plan import RunSpec
from polytask.study.resolve import backbone_options
from polytask.study.store import saved_model_path

UserBackbone = nn.Module | Callable[[], nn.Module]

# SimCLR's default views per input kind (options of polytask.data.augment's augmenters):
# small shifts, rotations and noise for images (digits keep their meaning; no flips), noise
# for standardized table rows, dropped and masked tokens for text.
SSL_VIEWS: dict[str, dict[str, Any]] = {
    "image": {"shift": 1, "rotate": 12.0, "noise": 0.1},
    "tabular": {"noise": 0.3},
    "text": {"token_dropout": 0.1, "span_mask": 0.15},
}


class StudyModels:
    """Building the models a study's runs start from (mixed into :class:`~polytask.study.runner.Study`).

    Attributes:
        config: the study's settings.
        backbone: the user's own shared layers or backbone name; replaces ``model.backbone``.
    """

    config: StudyConfig
    backbone: UserBackbone | None
    notes: list[str]
    _shapes: dict[str, tuple]
    # Per input shape, the tasks of that shape and the ``(levels + 1, dim)`` of their code
    # columns (set by StudyInputs._check_shapes; shapes without code columns are left out).
    _codes: dict[tuple, tuple[list[str], tuple[tuple[int, int], ...]]]
    _code_notes: set[str]  # the backbones already noted as reading codes as numbers
    _encoders: dict[str, Callable]

    def new_backbone(self, input_shape: tuple, pretrained: bool = False, name: str | None = None) -> nn.Module:
        """Backbone ``name`` (default ``model.backbone``) for inputs of ``input_shape``.

        Randomly initialized unless ``pretrained``; the user's own module (``backbone=``)
        replaces ``model.backbone``. For inputs with code columns, a builder that takes
        ``embeddings`` (``mlp``) gets them (:meth:`backbone_options_for`); see the module's
        docstring for every other backbone.
        """
        shape = tuple(input_shape)
        if name is None and self.backbone is not None and not isinstance(self.backbone, str):
            net = from_user_module(self.backbone, shape)
            self._check_codes(net, shape, "your backbone module")
            return net
        name = name or self._study_backbone()
        net = create_backbone(name, shape, pretrained, **self.backbone_options_for(name, shape))
        self._check_codes(net, shape, f"backbone '{name}'")
        return net

    def backbone_options_for(self, name: str, input_shape: tuple) -> dict[str, Any]:
        """The options backbone ``name`` is built with for inputs of ``input_shape``: the
        model config's (:func:`~polytask.study.resolve.backbone_options`), plus
        ``embeddings`` (a list of ``[levels + 1, dim]``) when those inputs have code columns
        and the builder takes that option. :meth:`_save_backbone` stores the same, so
        ``run:`` rebuilds the backbone with its embeddings."""
        options = backbone_options(self.config.model, name)
        _, embeddings = self._codes.get(tuple(input_shape), ((), ()))
        if embeddings and "embeddings" in (builder_options(name) or ()):
            options["embeddings"] = [list(pair) for pair in embeddings]
        return options

    def _check_codes(self, net: nn.Module, shape: tuple, what: str) -> None:
        """A backbone for inputs with code columns embeds exactly them, or reads them as
        numbers (one note per backbone); embedding other code columns is an error."""
        tasks, want = self._codes.get(shape, ((), ()))
        if not want:
            return
        have = tuple(tuple(pair) for pair in getattr(net, "embedding_sizes", ()))
        listed = ", ".join(repr(t) for t in tasks)
        if have and have != want:
            raise ConfigError(
                f"{what} embeds {len(have)} code column(s) of {_levels(have)} levels, but task(s) {listed} have "
                f"{len(want)} of {_levels(want)} levels; use a backbone saved from a study of the same table layout"
            )
        if not have and what not in self._code_notes:
            self._code_notes.add(what)
            note = (
                f"task(s) {listed}: the last {len(want)} input column(s) are integer codes of categorical columns (0: unknown), "
                f"which {what} reads as plain numbers; backbone mlp embeds them, or raise data.onehot_max to one-hot encode them"
            )
            self.notes.append(note)
            warnings.warn(note, PolytaskWarning, stacklevel=3)

    def encoder(self, source: str | None = None) -> Callable | None:
        """Tokenizer of the text backbone ``source`` (default: the study's backbone), cached."""
        key = source or ""
        if key not in self._encoders:
            name = source or (self._study_backbone() if isinstance(self.backbone, str | None) else None)
            tok = text_encoder(name, **backbone_options(self.config.model, name)) if name else None
            if tok is None:
                tok = getattr(self.new_backbone(TEXT_SHAPE, name=source), "tokenizer", None)
            if not callable(tok):
                raise ConfigError(f"backbone '{name or 'of the study'}' has no tokenizer; text tasks need gru, minilm, hf:<name> or a module with .tokenizer")
            self._encoders[key] = tok
        return self._encoders[key]

    def augmenters(self, source: str | None = None) -> dict[str, Any]:
        """Each augmented task's augmenter; text ones use ``source``'s pad and mask ids."""
        out: dict[str, Any] = {}
        for name, tcfg in self.config.tasks.items():
            if tcfg.augment:
                out[name] = self._augmenter(name, lambda kind, tcfg=tcfg: tcfg.augment, source, f"tasks.{name}.augment")
        return {k: v for k, v in out.items() if v is not None}

    def _source(self, source: str | None) -> str | None:
        """The backbone a strategy's ``:<source>`` names (aliases resolved); None: the study's
        (also for a self-supervised source, which trains the study's backbone)."""
        named = self.config.sources.get(source, source) if source else None
        return named if isinstance(named, str) else None

    def _is_ssl(self, source: str | None) -> bool:
        return source is not None and isinstance(self.config.sources.get(source), SSLSourceConfig)

    def _named_start(self, source: str | None) -> str | None:
        """The pretrained backbone a transfer strategy starts from: ``source`` (aliases
        resolved), else the study's backbone when it has pretrained weights; None means
        layers pretrained inside the study."""
        name = self._source(source)
        if name is None and isinstance(self.backbone, str | None) and is_pretrained(self._study_backbone()):
            name = self._study_backbone()
        return name

    def _study_backbone(self) -> str:
        return self.backbone if isinstance(self.backbone, str) else self.config.model.backbone

    def _preflight(self, tasks: dict[str, Task]) -> None:
        """Every strategy's own check, before anything is written (see :class:`Preflight`)."""
        shape = self._shapes[self.config.targets[0]]

        def backbone(source: str | None = None) -> nn.Module:
            name = self._named_start(source)
            return self.new_backbone(shape, pretrained=True, name=name) if name else self.new_backbone(shape)

        for strategy in self.config.strategies:
            check_strategy(Preflight(strategy, self.config, tasks, backbone))

    def _pretrain_fraction(self, fraction: float) -> float:
        """The fraction in-study pretraining for a run at ``fraction`` uses: the other
        targets' (sources always use all their rows). With one target it uses sources
        alone, so every fraction shares one pretraining."""
        return fraction if len(self.config.targets) > 1 else 1.0

    def _pretrained_path(self, out: Path, target: str, seed: int, fraction: float) -> Path:
        return out / "pretrained" / target / f"{self._pretrain_fraction(fraction):g}" / f"seed{seed}.pt"

    def _pretrained(self, out: Path, spec: RunSpec, callbacks=(), source: str | None = None) -> tuple[nn.Module, float]:
        """The backbone a transfer strategy starts from, and the seconds its training took.

        A named ``source`` (or a ``model.backbone`` with pretrained weights) is loaded as
        shipped. Otherwise: shared layers pretrained on every task but ``spec.task`` for
        ``spec.seed`` (the other targets at the run's fraction, the sources in full),
        trained once per (target, seed, fraction) and cached in the study folder, so both
        transfer strategies start from the same weights (and, with one target, every
        fraction too).
        """
        self.load()
        shape = self._shapes[spec.task]
        if self._is_ssl(source):
            cached = self._ssl_cache(out, spec, source, callbacks)
            backbone = self.new_backbone(shape)
            backbone.load_state_dict(cached["state"])
            return backbone, float(cached["seconds"])
        name = self._named_start(source)
        if name is not None:
            return self.new_backbone(shape, pretrained=True, name=name), 0.0
        cached = self._pretrained_cache(out, spec, callbacks)
        backbone = self.new_backbone(shape)
        backbone.load_state_dict(cached["state"])
        return backbone, float(cached["seconds"])

    def _ssl_augmenter(self, task: str, source: SSLSourceConfig):
        """SimCLR's view augmenter for ``task``'s inputs: the source's ``augment`` options,
        else a default per input kind (:data:`SSL_VIEWS`)."""
        return self._augmenter(task, lambda kind: source.augment or SSL_VIEWS[kind], None, "sources: augment")

    def _augmenter(self, task: str, options: Callable[[str], dict[str, Any]], source: str | None, where: str):
        """The augmenter of ``task``'s input kind with ``options(kind)``; text ones use the pad
        and mask ids of ``source``'s tokenizer. One line, naming ``where``, for a bad option."""
        raw, _ = self.load()
        pad_id = mask_id = None
        if is_text(raw[task].x_train):
            kind = "text"
            tok = self.encoder(source)
            pad_id, mask_id = getattr(tok, "pad_id", 0), getattr(tok, "mask_id", None)
        else:
            kind = "image" if len(self._shapes[task]) == 3 else "tabular"
        try:
            return build_augmenter(kind, dict(options(kind)), pad_id=pad_id or 0, mask_id=mask_id)
        except ValueError as e:
            raise ConfigError(f"{where}: {e}") from None

    def _load_pretraining(self, path: Path, need_heads: bool = True) -> dict[str, Any] | None:
        """The pretraining cached at ``path`` for this study's fingerprint, or None."""
        if not path.exists():
            return None
        try:
            cached = torch.load(path, weights_only=True)
        except Exception:  # a torn or foreign file is simply not a cached pretraining
            return None
        ok = isinstance(cached, dict) and cached.get("fingerprint") == self.fingerprint and "state" in cached and ("heads" in cached or not need_heads)
        return cached if ok else None

    def _pretrained_heads(self, out: Path, spec: RunSpec, callbacks=(), source: str | None = None) -> nn.ModuleDict | None:
        """Heads of the tasks the in-study pretrained layers learned (None for named backbones)."""
        if self._named_start(source) is not None or self._is_ssl(source):
            return None
        _, tasks = self.load()
        cached = self._pretrained_cache(out, spec, callbacks)
        model = MultiTaskModel(self.new_backbone(self._shapes[spec.task]), [t for n, t in tasks.items() if n != spec.task])
        model.heads.load_state_dict(cached["heads"])
        return model.heads

    def _save_backbone(self, out: Path, spec: RunSpec, backbone: nn.Module) -> None:
        """Keep a run's trained shared layers for ``run:<out>/<task>/<strategy>/seed<k>``."""
        path = saved_model_path(out, spec)
        source = transfer_source(self.config, spec.strategy) if uses_transfer_source(spec.strategy) else None
        name = source or (self._study_backbone() if isinstance(self.backbone, str | None) else None)
        if name is None:
            return  # the user's own module: nothing a later study could rebuild by name
        if isinstance(backbone, FeatureBackbone):
            return
        shape = self._shapes[spec.task]
        save_backbone(path, backbone, name, self.backbone_options_for(name, shape), shape)


def _levels(embeddings: tuple[tuple[int, int], ...]) -> str:
    """``(41, 13), (18, 8)`` -> ``40, 17``: the levels of embedded code columns."""
    return ", ".join(str(n - 1) for n, _ in embeddings)
