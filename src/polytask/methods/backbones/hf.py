"""``hf:<name-or-path>``: any Hugging Face ``AutoModel`` text encoder, mean-pooled; and the
loading of Hugging Face tokenizers and encoders (a local folder, the cache, or the hub)."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from polytask.core.errors import ConfigError
from polytask.methods.backbones.base import need_package, register_prefix
from polytask.methods.backbones.text import HFTokenizer, TransformerEncoder, check_text_shape


def _transformers(what: str):
    lib = need_package("transformers", "text", what)
    # Loading prints a progress bar per model; a study loads one per run.
    lib.utils.logging.disable_progress_bar()
    lib.utils.logging.set_verbosity_error()
    return lib


def load_hf_tokenizer(source: str, max_length: int, what: str):
    """The :class:`~polytask.methods.backbones.text.HFTokenizer` of a local folder or hub name."""
    lib = _transformers(what)
    tok = _hf_load(lib.AutoTokenizer.from_pretrained, source, what, "a tokenizer")
    if tok.pad_token is None:
        # Decoder tokenizers (GPT-2, Llama) have no pad token; padding with the end-of-text
        # token is the usual choice. Those positions are masked out of the pooled mean.
        if tok.eos_token is None:
            raise ConfigError(f"{what}: tokenizer of '{source}' has neither a pad nor an end-of-text token to pad with")
        tok.pad_token = tok.eos_token
    return HFTokenizer(tok, max_length)


def _hub_hint(source: str, e: Exception) -> str:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if Path(source).exists():
        return first
    return f"not a local folder, and the Hugging Face hub did not provide it (no network here? give a local path) ({first})"


def load_hf_encoder(source: str, max_length: int, pretrained: bool, what: str, normalize: bool = False) -> nn.Module:
    """A :class:`~polytask.methods.backbones.text.TransformerEncoder` from a local folder or hub name."""
    lib = _transformers(what)
    tokenizer = load_hf_tokenizer(source, max_length, what)
    if pretrained:
        model = _hf_load(lib.AutoModel.from_pretrained, source, what, "a model")
    else:
        model = lib.AutoModel.from_config(_hf_load(lib.AutoConfig.from_pretrained, source, what, "a model config"))
    return TransformerEncoder(model, tokenizer, normalize=normalize)


def _hf_load(load, source: str, what: str, thing: str):
    """``load(source)`` from a local folder, the Hugging Face cache, or the hub.

    Without a network, huggingface_hub retries a hub name for most of a minute before
    failing; a name that is neither a folder nor cached fails at once when the hub's host
    cannot be reached.
    """
    try:
        if Path(source).exists():
            return load(source)
        cached = _from_cache(load, source)
        if cached is not None:
            return cached
        if not _hub_reachable():
            where = "neither a local folder nor in the Hugging Face cache"
            raise ConfigError(f"{what}: '{source}' is {where}, and the hub is unreachable (no network?); give a local path")
        return load(source)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{what}: cannot load {thing} from '{source}': {_hub_hint(source, e)}") from None


def _from_cache(load, source: str):
    """``load(source)`` from the Hugging Face cache alone, or None when it is not there."""
    try:
        return load(source, local_files_only=True)
    except (OSError, ValueError):
        return None


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the Hugging Face endpoint opens within ``timeout`` seconds."""
    import socket
    from urllib.parse import urlparse

    try:
        from huggingface_hub import constants

        url = urlparse(constants.ENDPOINT)
    except ImportError:
        url = urlparse("https://huggingface.co")
    try:
        with socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout=timeout):
            return True
    except OSError:
        return False


@register_prefix("hf", options=("text",))
def build_hf(spec: str, input_shape: tuple, pretrained: bool, max_length: int = 64) -> nn.Module:
    """Hugging Face text encoder ``spec`` (a local folder or a hub name), mean-pooled."""
    check_text_shape(f"hf:{spec}", input_shape)
    return load_hf_encoder(spec, max_length, pretrained, f"backbone 'hf:{spec}'")
