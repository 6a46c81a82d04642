"""The tokenizer of a named text backbone, without building its network when possible."""

from __future__ import annotations

from polytask.methods.backbones.hf import load_hf_tokenizer
from polytask.methods.backbones.minilm import minilm_path
from polytask.methods.backbones.text import HashTokenizer


def text_encoder(name: str, vocab_size: int = 32768, max_length: int = 64, **_):
    """Tokenizer of text backbone ``name`` (``gru``, ``minilm``, ``hf:<name>``), or None.

    Args:
        vocab_size, max_length: the backbone's options (``gru`` hashes into ``vocab_size``
            ids; every text backbone keeps ``max_length`` tokens). Other options are ignored.
    """
    prefix, sep, spec = name.partition(":")
    if name == "gru":
        return HashTokenizer(vocab_size, max_length)
    if name == "minilm":
        return load_hf_tokenizer(minilm_path(), max_length, "backbone 'minilm'")
    if sep and prefix == "hf":
        return load_hf_tokenizer(spec, max_length, f"backbone '{name}'")
    return None
