"""Run by papers/quant_pretraining/tests/test_token_files.py: tokenize DOCS (one per line) into STEM.bin
with a byte-level encoder, and SIGKILL this process at the worst moment: right after the KILL_AT-th
chunk's tokens reached the disk and before the progress file says so.

python tests/workers/kill_writer.py DOCS STEM CHUNK KILL_AT
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from shared.text import token_files


def byte_encode(batch: list[str]) -> list[list[int]]:
    return [list(text.encode()) for text in batch]


def main(docs_path: str, stem: str, chunk: int, kill_at: int) -> None:
    docs = Path(docs_path).read_text().splitlines()
    real, writes = token_files.atomic_write_json, []

    def killing_write(path, obj):  # noqa: ANN001, ANN202
        writes.append(path)
        if len(writes) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(path, obj)

    token_files.atomic_write_json = killing_write
    token_files.write_tokens(Path(stem), len(docs), lambda i, j: docs[i:j], byte_encode, 256, 257, "bytes", chunk)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
