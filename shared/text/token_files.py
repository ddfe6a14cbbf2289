"""Token files, the nanoGPT / lingua pattern: a corpus tokenized once into STEM.bin, the token ids as
raw uint16 (uint32 for vocabularies over 65536) read back memory-mapped, with STEM.json beside it
(dtype, tokens, documents).

The file is written in chunks of documents, so memory holds one chunk rather than the corpus, and it
is resumable: after each chunk's bytes are fsynced, STEM.partial.json records how many documents and
tokens are on disk; a killed run continues from there, dropping bytes written after the last record.
STEM.json appears only when the file is complete, so its existence is what other ranks wait for.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from shared.io import atomic_write_json
from shared.progress import get_logger

log = get_logger(__name__)

Texts = Callable[[int, int], list[str]]  # documents [start, stop) of a split, in order
Encode = Callable[[list[str]], list[list[int]]]  # token ids of each document


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def meta_path(stem: Path, kind: str = "") -> Path:
    """STEM.json (a finished file's meta) or, with kind='.partial', STEM.partial.json (progress)."""
    return stem.with_name(f"{stem.name}{kind}.json")


def write_tokens(
    stem: Path,
    n_docs: int,
    texts: Texts,
    encode: Encode,
    eos: int,
    vocab_size: int,
    source: str,
    chunk: int = 4096,
) -> np.ndarray:
    """Tokenize documents 0..n_docs-1 into STEM.bin (each followed by `eos`), `chunk` documents at a time,
    resuming a partial file of the same `source`; return the stream memory-mapped."""
    done, partial, binary = meta_path(stem), meta_path(stem, ".partial"), stem.with_name(stem.name + ".bin")
    if done.is_file():
        return open_tokens(stem)
    dtype = token_dtype(vocab_size)
    state = {"source": source, "dtype": dtype.name, "documents": 0, "tokens": 0, "of": n_docs}
    if partial.is_file():
        previous = json.loads(partial.read_text())
        if {k: previous.get(k) for k in ("source", "dtype", "of")} == {k: state[k] for k in ("source", "dtype", "of")}:
            state = previous
            log.info("%s: resuming at document %d of %d", binary.name, state["documents"], n_docs)
    binary.parent.mkdir(parents=True, exist_ok=True)
    with open(binary, "ab") as fh:
        fh.truncate(state["tokens"] * dtype.itemsize)  # bytes past the last recorded chunk are a killed write's
        fh.seek(state["tokens"] * dtype.itemsize)
        while state["documents"] < n_docs:
            stop = min(n_docs, state["documents"] + chunk)
            ids = encode(texts(state["documents"], stop))
            flat = np.fromiter(
                (t for doc in ids for t in (*doc, eos)), dtype=np.int64, count=sum(map(len, ids)) + len(ids)
            )
            bad = flat[(flat < 0) | (flat >= vocab_size)]
            if bad.size:
                raise ValueError(f"{binary.name}: token id {int(bad[0])} outside the vocabulary of {vocab_size}")
            fh.write(flat.astype(dtype).tobytes())
            fh.flush()
            os.fsync(fh.fileno())
            state["documents"], state["tokens"] = stop, state["tokens"] + int(flat.size)
            atomic_write_json(partial, state)
    atomic_write_json(done, {k: state[k] for k in ("dtype", "tokens", "documents")})
    partial.unlink(missing_ok=True)
    return open_tokens(stem)


def open_tokens(stem: Path) -> np.ndarray:
    """A finished token file, memory-mapped read-only."""
    meta = json.loads(meta_path(stem).read_text())
    if meta["tokens"] == 0:
        return np.zeros(0, dtype=meta["dtype"])
    return np.memmap(stem.with_name(stem.name + ".bin"), dtype=meta["dtype"], mode="r", shape=(meta["tokens"],))
