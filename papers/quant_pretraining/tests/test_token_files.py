"""Token files: the streamed, memory-mapped corpus equals the in-memory tokenization token for token,
resumes after a SIGKILL mid-way, and the HF path (OpenWebText at full scale) builds from a local dataset."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from papers.quant_pretraining import data
from papers.quant_pretraining.config import DataConfig
from shared.distributed import DistributedError
from shared.text.token_files import atomic_write_json, write_tokens

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests" / "workers"))
from kill_writer import byte_encode  # noqa: E402


def _docs(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    words = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "über", "naïve", "zebra", "42"]
    return [" ".join(rng.choice(words, size=int(rng.integers(1, 30)))) for _ in range(n)]


def _bytes_reference(docs: list[str]) -> np.ndarray:
    return np.array([t for d in docs for t in (*d.encode(), 256)], dtype=np.uint16)


def test_a_killed_tokenization_resumes_to_the_same_tokens(tmp_path):
    """SIGKILL after the 3rd chunk's bytes are on disk but before its progress record; the rerun drops those
    bytes, goes on from the 3rd chunk and ends with the in-memory reference, token for token."""
    docs = _docs(100)
    (tmp_path / "docs.txt").write_text("\n".join(docs))
    stem = tmp_path / "train"
    script = str(ROOT / "tests" / "workers" / "kill_writer.py")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, script, str(tmp_path / "docs.txt"), str(stem), "16", "3"], env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    progress = json.loads((tmp_path / "train.partial.json").read_text())
    reference = _bytes_reference(docs)
    assert progress["documents"] == 32 and not (tmp_path / "train.json").exists()
    assert (tmp_path / "train.bin").stat().st_size > progress["tokens"] * 2  # the killed chunk's bytes landed
    seen = []
    stream = write_tokens(stem, len(docs), lambda i, j: seen.append(i) or docs[i:j], byte_encode, 256, 257,
                               "bytes", 16)  # fmt: skip
    assert seen == [32, 48, 64, 80, 96]  # resumed at the recorded document, not from the start
    assert isinstance(stream, np.memmap) and stream.dtype == np.uint16
    np.testing.assert_array_equal(stream, reference)
    assert json.loads((tmp_path / "train.json").read_text()) == {"dtype": "uint16", "tokens": len(reference),
                                                                 "documents": 100}  # fmt: skip
    assert not (tmp_path / "train.partial.json").exists()
    other = write_tokens(tmp_path / "other", 3, lambda i, j: docs[i:j], byte_encode, 256, 70_000, "x", 2)
    assert other.dtype == np.uint32 and list(other) == list(reference[: len(other)])


def test_a_partial_file_of_other_documents_is_started_over(tmp_path):
    docs = _docs(40)
    stem = tmp_path / "t"
    atomic_write_json(tmp_path / "t.partial.json", {"source": "old", "dtype": "uint16", "documents": 20,
                                                         "tokens": 5, "of": 40})  # fmt: skip
    (tmp_path / "t.bin").write_bytes(b"\x01\x00" * 5)
    stream = write_tokens(stem, len(docs), lambda i, j: docs[i:j], byte_encode, 256, 257, "new", 8)
    np.testing.assert_array_equal(stream, _bytes_reference(docs))
    with pytest.raises(ValueError, match=r"bad.bin: token id \d+ outside the vocabulary of 100"):
        write_tokens(tmp_path / "bad", 2, lambda i, j: docs[i:j], byte_encode, 256, 100, "b")


def test_bpe_token_files_equal_encode_documents(tmp_path):
    """The prose corpus's path: a BPE trained here, documents framed <s> ... </s>, as encode_documents."""
    from shared.text.tokenizer import EOS_ID, encode_documents, train_bpe

    docs = _docs(120, seed=1)
    tok = train_bpe(docs, 300, max_length=10**9)

    def encode(batch: list[str]) -> list[list[int]]:
        return tok(batch, add_special_tokens=True)["input_ids"]

    stream = write_tokens(tmp_path / "bpe", len(docs), lambda i, j: docs[i:j], encode, EOS_ID, 300, "bpe", 7)
    np.testing.assert_array_equal(stream, encode_documents(tok, docs))


def test_hf_corpus_and_zero_shot_sets_stream_through_token_files(tmp_path, monkeypatch):
    """OpenWebText's path on a local dataset and tokenizer: the split, train and validation streams and a
    zero-shot set equal the in-memory tokenization the paper used before (tokenizer(texts), EOS after each)."""
    from datasets import Dataset

    from shared.text.tokenizer import train_bpe

    docs = _docs(300, seed=2)
    tok_dir = tmp_path / "hub-tokenizer"
    train_bpe(docs, 300, max_length=10**9).save_pretrained(tok_dir)
    corpus_ds = Dataset.from_dict({"text": docs})
    wikitext = Dataset.from_dict({"text": ["", *docs[:9], " "]})
    sets = {
        ("Skylion007/openwebtext", None, "train"): corpus_ds,
        ("Salesforce/wikitext", "wikitext-2-raw-v1", "test"): wikitext,
    }
    monkeypatch.setattr(data, "_hf_load", lambda *key: sets[key])
    monkeypatch.setattr(data, "TOKENIZE_CHUNK", 32)
    cfg = DataConfig(source="hf", hf_tokenizer=str(tok_dir), val_fraction=0.05)
    corpus = data.load_corpus(cfg, tmp_path / "cache")

    from transformers import AutoTokenizer

    ref_tok = AutoTokenizer.from_pretrained(str(tok_dir), add_prefix_space=True)

    def reference(texts: list[str]) -> np.ndarray:
        return np.array([t for ids in ref_tok(texts)["input_ids"] for t in (*ids, ref_tok.eos_token_id)], np.uint16)

    parts = corpus_ds.train_test_split(test_size=0.05, seed=2345)
    np.testing.assert_array_equal(corpus.train, reference(list(parts["train"]["text"])))
    np.testing.assert_array_equal(corpus.valid["owt"], reference(list(parts["test"]["text"])))
    assert corpus.vocab_size == 320 and isinstance(corpus.train, np.memmap)
    again = data.load_corpus(cfg, tmp_path / "cache")  # read back, nothing rebuilt
    np.testing.assert_array_equal(again.train, corpus.train)
    zero_shot = data.zero_shot_streams(["wikitext2"], corpus.tokenizer_dir)
    np.testing.assert_array_equal(zero_shot["wikitext2"], reference(docs[:9]))


def test_a_rank_other_than_zero_waits_for_the_corpus_and_builds_nothing(tmp_path, monkeypatch):
    for name, value in {"RANK": "1", "WORLD_SIZE": "2", "SHARED_RANK_WAIT_S": "0.2"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(DistributedError, match=r"\[rank 1/2\] waited 0 s for rank 0 to prepare the prose corpus"):
        data.load_corpus(DataConfig(max_documents=10, vocab_size=300), tmp_path)
    assert not any(tmp_path.iterdir())
