"""Syscall requests -> tokens, as the trace papers feed them to their models (Fournier et al.'s data.txt).

Each request becomes [START] e_1 ... e_n [END] (or ... e_k [TRUNCATE] when longer than max_tokens) with
seven integer fields per token: call (name id), entry (1 entry, 2 exit, 0 special), elapsed ns since the
previous event, process-name id, pid, tid and ret (0 none, 1 success, 2 failure). Vocabularies are built
on training data only; unseen values map to [UNKNOWN].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SPECIALS = ("[MASK]", "[UNKNOWN]", "[START]", "[END]", "[TRUNCATE]")
PAD, UNKNOWN, START, END, TRUNCATE = range(5)
FIELDS = ("call", "entry", "elapsed", "proc", "pid", "tid", "ret")


@dataclass
class Vocab:
    names: dict[str, int]
    procs: dict[str, int]

    @classmethod
    def build(cls, names: list[np.ndarray], procs: list[np.ndarray]) -> Vocab:
        def table(seqs: list[np.ndarray]) -> dict[str, int]:
            out = {s: i for i, s in enumerate(SPECIALS)}
            for value in sorted({str(v) for seq in seqs for v in np.unique(seq)}):
                out.setdefault(value, len(out))
            return out

        return cls(table(names), table(procs))


def token_fields(seq: dict, vocab: Vocab) -> dict[str, np.ndarray]:
    """Per-event integer fields of a sequence (no specials): call, entry, proc, pid, tid, ret flag."""
    entry = np.asarray(seq["entry"], dtype=np.int64)
    ret = np.nan_to_num(np.asarray(seq["ret"], dtype=float), nan=0.0)
    return {
        "call": np.array([vocab.names.get(str(s), UNKNOWN) for s in seq["name"]], dtype=np.int64),
        "entry": entry,
        "proc": np.array([vocab.procs.get(str(s), UNKNOWN) for s in seq["comm"]], dtype=np.int64),
        "pid": np.asarray(seq["pid"], dtype=np.int64),
        "tid": np.asarray(seq["tid"], dtype=np.int64),
        "ret": np.where(entry == 2, np.where(ret < 0, 2, 1), 0).astype(np.int64),
    }


def encode(seq: dict, vocab: Vocab, max_tokens: int) -> tuple[np.ndarray, bool]:
    """(tokens x 7 int64, truncated?) for one request, wrapped in [START] ... [END]/[TRUNCATE]."""
    n = len(seq["name"])
    keep = min(n, max_tokens - 2)
    f = token_fields({k: v[:keep] for k, v in seq.items() if k != "duration_ns"}, vocab)
    out = np.zeros((keep + 2, len(FIELDS)), dtype=np.int64)
    out[0, 0] = START
    ts = np.asarray(seq["ts"][:keep], dtype=np.int64)
    body = out[1 : keep + 1]
    body[:, 0], body[:, 1], body[:, 3] = f["call"], f["entry"], f["proc"]
    body[:, 2] = np.diff(ts, prepend=ts[0]) if keep else []
    body[:, 4], body[:, 5], body[:, 6] = f["pid"], f["tid"], f["ret"]
    out[-1, 0] = TRUNCATE if n > keep else END
    return out, n > keep
