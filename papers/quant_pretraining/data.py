"""Token streams for pre-training and evaluation, and the batches the engine draws from them.

prose (smoke, mini): paragraphs of Debian's Python documentation and King James Bible, shuffled
per source with the authors' split seed (2345) into train and validation documents; a byte-level
BPE trained on the training documents only; each document framed <s> ... </s> and concatenated
(run_clm style). Validation is kept per source, so the two registers serve as the mini scale's
zero-shot suite.

hf (medium, full): the authors' corpus (OpenWebText) through HF datasets, split with
train_test_split(test_size=0.0005, seed=2345) and tokenized with the GPT-2 tokenizer; the zero-shot
perplexity sets of the paper's `ppl` suite are loaded the same way. Offline without a cache, the
loaders fail with one line naming the dataset id.

Every stream is a token file (shared.text.token_files): raw uint16 ids, memory-mapped, written
TOKENIZE_CHUNK documents at a time (memory holds one chunk, not OpenWebText's ~9e9 tokens) and resumed
where a killed run stopped. With several ranks, rank 0 builds the corpus and the others wait for its
corpus.json (shared.distributed.rank_zero_first), then map the same files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from papers.quant_pretraining.config import DataConfig
from shared.data.errors import DatasetNotFoundError
from shared.distributed import rank_zero_first
from shared.io import atomic_dir, atomic_write_json
from shared.progress import get_logger
from shared.run import content_hash
from shared.text.token_files import Encode, meta_path, open_tokens, write_tokens

log = get_logger(__name__)

# (dataset id, config, split, text field) of the paper's zero-shot perplexity suite.
HF_EVAL = {
    "wikitext2": ("Salesforce/wikitext", "wikitext-2-raw-v1", "test", "text"),
    "wikitext103": ("Salesforce/wikitext", "wikitext-103-raw-v1", "test", "text"),
    "ptb": ("ptb-text-only/ptb_text_only", "penn_treebank", "test", "sentence"),
    "lm1b": ("dvilares/lm1b", None, "test", "text"),
}

TOKENIZE_CHUNK = 4096  # documents per write: memory holds one chunk (not in the config: it changes no token)


@dataclass
class Corpus:
    """A training stream, named validation streams and the tokenizer's folder."""

    train: np.ndarray
    valid: dict[str, np.ndarray]
    tokenizer_dir: Path
    vocab_size: int


def split_documents(docs: list[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(train, valid): a seeded permutation, the first ceil(fraction * n) documents held out."""
    order = np.random.default_rng(seed).permutation(len(docs))
    n_val = max(1, int(np.ceil(val_fraction * len(docs))))
    return [docs[i] for i in order[n_val:]], [docs[i] for i in order[:n_val]]


def _prose_key(cfg: DataConfig) -> str:
    fields = {"sources": cfg.prose_sources, "max": cfg.max_documents, "vocab": cfg.vocab_size}
    return content_hash({**fields, "val": cfg.val_fraction, "seed": cfg.split_seed, "v": 2})


def prose_corpus(cfg: DataConfig, cache: Path) -> Corpus:
    """Build (or read back, or finish) the prose corpus; cached under `cache` by the data config's hash."""
    folder = cache / f"corpus-{_prose_key(cfg)}"
    with rank_zero_first(folder / "corpus.json", "the prose corpus"):
        if not (folder / "corpus.json").is_file():
            _build_prose(cfg, folder)
    valid = {s: open_tokens(folder / f"valid_{s}") for s in cfg.prose_sources}
    return Corpus(open_tokens(folder / "train"), valid, folder / "tokenizer", cfg.vocab_size)


def _build_prose(cfg: DataConfig, folder: Path) -> None:
    from shared.text.prose import load_prose
    from shared.text.tokenizer import EOS_ID, load_tokenizer, train_bpe

    train_docs, valid = [], {}
    for source in cfg.prose_sources:
        docs = load_prose([source])[: cfg.max_documents]
        tr, va = split_documents(docs, cfg.val_fraction, cfg.split_seed)
        train_docs += tr
        valid[source] = va
    if not (folder / "tokenizer").is_dir():  # kept across a resume: the token files are in its ids
        log.info("training a %d-token BPE on %d documents", cfg.vocab_size, len(train_docs))
        tok = train_bpe(train_docs, cfg.vocab_size, max_length=10**9)  # streams, not model inputs
        with atomic_dir(folder / "tokenizer") as tmp:
            tok.save_pretrained(tmp)
    tok = load_tokenizer(folder / "tokenizer")

    def encode(batch: list[str]) -> list[list[int]]:
        return tok(batch, add_special_tokens=True)["input_ids"]

    key = _prose_key(cfg)
    for name, docs in [*((f"valid_{s}", d) for s, d in valid.items()), ("train", train_docs)]:
        write_tokens(folder / name, len(docs), lambda i, j, d=docs: d[i:j], encode, EOS_ID, cfg.vocab_size,
                     f"{key}/{name}", TOKENIZE_CHUNK)  # fmt: skip
    atomic_write_json(folder / "corpus.json", {"vocab_size": cfg.vocab_size, "streams": ["train", *valid]})


def _hf_load(dataset: str, config: str | None, split: str):  # noqa: ANN202
    from datasets import load_dataset

    try:
        return load_dataset(dataset, config, split=split)
    except Exception as exc:  # offline, missing cache, unknown id: one line naming the dataset
        raise DatasetNotFoundError(
            f"HF dataset {dataset!r} ({config or 'default'}, {split}) could not be loaded: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}; it needs a network or a "
            "local HF cache (HF_DATASETS_OFFLINE=1 is set in tests)"
        ) from exc


def _hf_encoder(tokenizer) -> Encode:  # noqa: ANN001
    return lambda batch: tokenizer(batch)["input_ids"]


def hf_corpus(cfg: DataConfig, cache: Path) -> Corpus:
    """OpenWebText (or cfg.hf_dataset) tokenized with the GPT-2 tokenizer, as the authors' run_clm."""
    key = content_hash(
        {
            "ds": cfg.hf_dataset,
            "tok": cfg.hf_tokenizer,
            "max": cfg.hf_max_documents,
            "val": cfg.val_fraction,
            "seed": cfg.split_seed,
            "v": 2,
        }
    )
    folder = cache / f"hf-{key}"
    with rank_zero_first(folder / "corpus.json", f"the {cfg.hf_dataset} token files"):
        if not (folder / "corpus.json").is_file():
            _build_hf(cfg, folder, key)
    meta = json.loads((folder / "corpus.json").read_text())
    valid = {"owt": open_tokens(folder / "valid_owt")}
    return Corpus(open_tokens(folder / "train"), valid, folder / "tokenizer", meta["vocab_size"])


def _build_hf(cfg: DataConfig, folder: Path, key: str) -> None:
    from transformers import AutoTokenizer

    if not (folder / "tokenizer").is_dir():
        tokenizer = AutoTokenizer.from_pretrained(cfg.hf_tokenizer, add_prefix_space=True)
        with atomic_dir(folder / "tokenizer") as tmp:
            tokenizer.save_pretrained(tmp)
    tokenizer = AutoTokenizer.from_pretrained(str(folder / "tokenizer"))
    vocab = int(np.ceil(len(tokenizer) / 64) * 64)
    ds = _hf_load(cfg.hf_dataset, None, "train")
    if cfg.hf_max_documents:
        ds = ds.select(range(min(cfg.hf_max_documents, len(ds))))
    parts = ds.train_test_split(test_size=cfg.val_fraction, seed=cfg.split_seed)
    for name, part in (("valid_owt", parts["test"]), ("train", parts["train"])):
        write_tokens(folder / name, len(part), lambda i, j, p=part: p[i:j]["text"], _hf_encoder(tokenizer),
                     tokenizer.eos_token_id, vocab, f"{key}/{name}", TOKENIZE_CHUNK)  # fmt: skip
    atomic_write_json(folder / "corpus.json", {"vocab_size": vocab, "streams": ["train", "valid_owt"]})


def zero_shot_streams(names: list[str], tokenizer_dir: Path) -> dict[str, np.ndarray]:
    """The paper's zero-shot perplexity sets, each one token stream (documents joined by EOS), as token
    files beside the corpus (built by rank 0)."""
    from transformers import AutoTokenizer

    out = {}
    for name in names:
        stem = tokenizer_dir.parent / f"zeroshot_{name}"
        with rank_zero_first(meta_path(stem), f"the {name} token file"):
            if not meta_path(stem).is_file():
                tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
                dataset, config, split, field = HF_EVAL[name]
                texts = [t for t in _hf_load(dataset, config, split)[field] if t.strip()]
                vocab = int(np.ceil(len(tokenizer) / 64) * 64)
                write_tokens(stem, len(texts), lambda i, j, t=texts: t[i:j], _hf_encoder(tokenizer),
                             tokenizer.eos_token_id, vocab, f"{dataset}/{config}/{split}")  # fmt: skip
        out[name] = open_tokens(stem)
    return out


def load_corpus(cfg: DataConfig, cache: Path) -> Corpus:
    return prose_corpus(cfg, cache) if cfg.source == "prose" else hf_corpus(cfg, cache)


class RandomWindows:
    """The batch of a step: `batch_size` random windows of seq_len + 1 tokens, drawn from a generator
    seeded by (seed, step), so any step's batch can be recomputed (exact resume, any world size).

    Micro-batch `micro` of rank `rank` is slice (micro * world + rank) of the global batch; every
    partition of the same global batch gives the same mean gradient.
    """

    def __init__(self, stream: np.ndarray, seq_len: int, batch_size: int, micro_batch: int, seed: int) -> None:
        if len(stream) < seq_len + 2:
            raise ValueError(f"a stream of {len(stream)} tokens is shorter than one window of {seq_len + 1}")
        self.stream, self.seq_len, self.batch_size, self.micro_batch, self.seed = (
            stream,
            seq_len,
            batch_size,
            micro_batch,
            seed,
        )

    def global_starts(self, step: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, step])
        return rng.integers(0, len(self.stream) - self.seq_len - 1, size=self.batch_size)

    def __call__(self, step: int, micro: int, rank: int, world: int) -> tuple[torch.Tensor, torch.Tensor]:
        starts = self.global_starts(step)
        chunk = micro * world + rank
        mine = starts[chunk * self.micro_batch : (chunk + 1) * self.micro_batch]
        windows = np.stack([np.asarray(self.stream[s : s + self.seq_len + 1], dtype=np.int64) for s in mine])
        t = torch.from_numpy(windows)
        return t[:, :-1], t[:, 1:]


def eval_windows(stream: np.ndarray, seq_len: int, max_windows: int | None) -> torch.Tensor:
    """Non-overlapping windows of seq_len + 1 tokens from the start of `stream` (stride seq_len,
    the paper's stride = max length), at most `max_windows`."""
    n = (len(stream) - 1) // seq_len
    if max_windows:
        n = min(n, max_windows)
    if n == 0:
        raise ValueError(f"a stream of {len(stream)} tokens holds no window of {seq_len + 1}")
    idx = np.arange(n)[:, None] * seq_len + np.arange(seq_len + 1)[None, :]
    return torch.from_numpy(np.asarray(stream[: n * seq_len + 1], dtype=np.int64)[idx])
