"""A byte-level long-range text task built from local prose: which part of the King James Bible
does a passage come from (6 classes: Law, History, Wisdom, Prophets, Gospels+Acts,
Epistles+Revelation)? Like LRA's byte-level IMDb task, the model reads raw bytes.

The text comes from Debian's bible-kjv (`bible 'Gen1:1-Rev22:21'`). Each book is cut into
consecutive, non-overlapping windows of max_len - 1 bytes; every 5th window goes to the test split,
so no test byte is seen in training. Classes are balanced by sampling.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np

from shared.data.errors import DatasetNotFoundError

CLASSES = ("law", "history", "wisdom", "prophets", "gospels_acts", "epistles_revelation")
# First book (0-based, canonical order) of each class.
CLASS_STARTS = (0, 5, 17, 22, 39, 44)
N_BOOKS = 66
PAD, CLS, OFFSET = 0, 1, 2  # byte b -> token b + OFFSET
VOCAB_SIZE = 256 + OFFSET
HEADER = re.compile(r"^(\S.*?) (\d+)$")
VERSE = re.compile(r"^\s+\d+\s+")


def read_books() -> list[str]:
    """The 66 books' text, verse numbers and line wrapping removed."""
    exe = shutil.which("bible")
    if exe is None:
        raise DatasetNotFoundError("the KJV task needs Debian's bible-kjv (apt-get install bible-kjv)")
    text = subprocess.run([exe, "Gen1:1-Rev22:21"], capture_output=True, text=True, check=True).stdout
    books: list[list[str]] = []
    names: list[str] = []
    prev = ""
    for line in text.splitlines():
        m = HEADER.match(line)
        if prev == "" and m:
            if not names or names[-1] != m.group(1):
                names.append(m.group(1))
                books.append([])
        elif line.strip() and books:
            books[-1].append(VERSE.sub("", line).strip())
        prev = line
    if len(books) != N_BOOKS:
        raise DatasetNotFoundError(f"bible-kjv output has {len(books)} books, expected {N_BOOKS}")
    return [" ".join(b) for b in books]


def book_class(book: int) -> int:
    return int(np.searchsorted(CLASS_STARTS, book, side="right") - 1)


def windows(books: list[str], size: int) -> tuple[list[bytes], list[int], list[bool]]:
    """Non-overlapping byte windows of each book, their class, and whether they are test windows."""
    out, labels, is_test = [], [], []
    for i, text in enumerate(books):
        raw = text.encode("ascii", "replace")
        for j in range(len(raw) // size):
            out.append(raw[j * size : (j + 1) * size])
            labels.append(book_class(i))
            is_test.append(j % 5 == 4)
    return out, labels, is_test


def encode(chunk: bytes, max_len: int) -> list[int]:
    ids = [CLS] + [b + OFFSET for b in chunk]
    return ids + [PAD] * (max_len - len(ids))


def balanced_sample(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n indices, as equal across classes as the pool allows, each class without replacement."""
    classes = np.unique(labels)
    per = [n // len(classes) + (i < n % len(classes)) for i in range(len(classes))]
    picked = []
    for c, k in zip(classes, per, strict=True):
        pool = np.flatnonzero(labels == c)
        picked.append(rng.choice(pool, size=k, replace=len(pool) < k))
    return rng.permutation(np.concatenate(picked))
