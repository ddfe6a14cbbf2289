"""ListOps follows LRA's generator; the KJV task splits without overlap; LRA files are read."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from papers.efficient_transformers.config import TaskConfig
from papers.efficient_transformers.data import kjv, listops
from papers.efficient_transformers.data.tasks import load_task, read_lra_listops_tsv
from shared.data.errors import CorruptDataError, DatasetNotFoundError


def test_listops_semantics_by_hand():
    t = listops.Tree("[SM", [listops.Tree("[MAX", [3, 9, 1]), listops.Tree("[MED", [1, 2, 4, 8]), 5])
    # SM(9, int(median(1,2,4,8)) = 3, 5) = 17 % 10
    assert listops.evaluate(t) == 7
    assert listops.evaluate(listops.Tree("[MIN", [4, listops.Tree("[MED", [9, 0, 6])])) == 4
    assert " ".join(listops.tokens(t)) == "[SM [MAX 3 9 1 ] [MED 1 2 4 8 ] 5 ]"


def test_listops_generation_respects_lengths_uniqueness_and_seed():
    pairs = listops.generate(50, 10, 40, 10, 10, seed=1)
    assert len({s for s, _ in pairs}) == 50
    assert all(10 < len(s.split()) < 40 for s, _ in pairs)
    assert all(0 <= t <= 9 for _, t in pairs)
    assert pairs == listops.generate(50, 10, 40, 10, 10, seed=1)


def test_listops_length_counts_operators_as_two_plus_arguments():
    rng = random.Random(3)
    checked = 0
    while checked < 100:
        try:
            tree, length = listops.generate_tree(rng, 1, 10, 10, 1000)
        except listops.TooLong:
            continue
        assert len(listops.tokens(tree)) == length
        checked += 1


def test_listops_encoding_drops_parentheses_and_pads():
    ids = listops.encode("( ( [MAX 2 ) 9 ) ]", 8)
    assert ids == [listops.CLS, listops.TOKEN_ID["[MAX"], 4, 11, listops.TOKEN_ID["]"], 0, 0, 0]
    with pytest.raises(ValueError, match="exceeds max_len"):
        listops.encode("1 2 3", 3)


def test_lra_tsv_reader(tmp_path):
    path = tmp_path / "basic_train.tsv"
    path.write_text("Source\tTarget\n( ( [MIN 3 ) 5 ) ]\t3\n( ( [SM 1 ) 2 ) ]\t3\n")
    rows, labels = read_lra_listops_tsv(path, 8, 10)
    assert labels == [3, 3] and rows[0][:5] == [1, listops.TOKEN_ID["[MIN"], 5, 7, listops.TOKEN_ID["]"]]
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\n1\t2\n")
    with pytest.raises(CorruptDataError, match="Source, Target"):
        read_lra_listops_tsv(bad, 8, 10)


def test_generated_listops_task_shapes():
    task = load_task(TaskConfig("listops", max_len=32, n_train=30, n_test=10, min_len=4))
    assert task.x_train.shape == (30, 32) and task.x_test.shape == (10, 32)
    assert (task.x_train[:, 0] == listops.CLS).all() and task.n_classes == 10


def test_kjv_classes_follow_canonical_order():
    assert [kjv.book_class(b) for b in (0, 4, 5, 16, 17, 21, 22, 38, 39, 43, 44, 65)] == [
        0,
        0,
        1,
        1,
        2,
        2,
        3,
        3,
        4,
        4,
        5,
        5,
    ]


def test_kjv_windows_do_not_overlap_and_split_every_fifth():
    books = ["a" * 25, "b" * 12]
    chunks, labels, is_test = kjv.windows(books, 5)
    assert chunks == [b"aaaaa"] * 5 + [b"bbbbb"] * 2 and is_test == [False] * 4 + [True] + [False] * 2
    assert labels == [0] * 7


def test_kjv_balanced_sample():
    labels = np.array([0] * 10 + [1] * 3)
    idx = kjv.balanced_sample(labels, 6, np.random.default_rng(0))
    assert sorted(np.bincount(labels[idx]).tolist()) == [3, 3]


def test_kjv_task_from_the_debian_text():
    try:
        books = kjv.read_books()
    except DatasetNotFoundError as exc:  # bible-kjv not installed
        pytest.skip(str(exc))
    assert len(books) == 66 and books[0].startswith("In the beginning God created")
    task = load_task(TaskConfig("kjv", max_len=64, n_train=60, n_test=30))
    assert torch.bincount(task.y_test).tolist() == [5] * 6
    assert task.x_train.max() < kjv.VOCAB_SIZE
