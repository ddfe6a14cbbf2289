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


def encode(seq: dict, vocab: Vocab, max_tokens: int) -> tuple[np.ndarray, bool]:
    """(tokens x 7 int64, truncated?) for one request, wrapped in [START] ... [END]/[TRUNCATE]."""
    n = len(seq["name"])
    keep = min(n, max_tokens - 2)
    out = np.zeros((keep + 2, len(FIELDS)), dtype=np.int64)
    out[0, 0] = START
    body = out[1 : keep + 1]
    body[:, 0] = [vocab.names.get(str(s), UNKNOWN) for s in seq["name"][:keep]]
    body[:, 1] = seq["entry"][:keep]
    ts = seq["ts"][:keep].astype(np.int64)
    body[:, 2] = np.diff(ts, prepend=ts[0]) if keep else []
    body[:, 3] = [vocab.procs.get(str(s), UNKNOWN) for s in seq["comm"][:keep]]
    body[:, 4] = seq["pid"][:keep]
    body[:, 5] = seq["tid"][:keep]
    ret = seq["ret"][:keep]
    exits = seq["entry"][:keep] == 2
    body[:, 6] = np.where(exits, np.where(np.nan_to_num(ret.astype(float), nan=0.0) < 0, 2, 1), 0)
    out[-1, 0] = TRUNCATE if n > keep else END
    return out, n > keep
