"""shared.text: the Debian prose reader and the locally trained BPE tokenizer."""

from __future__ import annotations

import re

import numpy as np
import pytest

from shared.text.prose import SOURCES, load_prose, missing_sources, rst_paragraphs
from shared.text.tokenizer import BOS_ID, EOS_ID, PAD_ID, encode_documents, load_tokenizer, train_bpe

RST = """.. _tut-if:

:keyword:`!if` Statements
=========================

Perhaps the most well-known statement type is the :keyword:`if` statement, see
`the docs <https://docs.python.org>`_ and ``x < 0`` for example::

   >>> x = int(input("Please enter an integer: "))

.. note::
   A note that is not prose we want.
"""

TEXTS = ["the cat sat on the mat and the dog sat on the log"] * 20 + ["a quick brown fox jumps over the lazy dog"] * 20


def test_rst_paragraphs_strip_markup_and_code():
    (paragraph,) = rst_paragraphs(RST)
    assert paragraph == (
        "Perhaps the most well-known statement type is the if statement, see the docs and x < 0 for example:"
    )


def test_unknown_source_names_the_valid_ones():
    with pytest.raises(ValueError, match="unknown prose source.*valid: python-doc, kjv"):
        load_prose(["gutenberg"])


@pytest.mark.skipif(bool(missing_sources()), reason=f"Debian prose packages missing: {missing_sources()}")
def test_debian_prose_is_large_and_deterministic():
    kjv = load_prose(["kjv"])
    assert len(kjv) == 31102 and kjv[0] == "In the beginning God created the heaven and the earth."
    doc = load_prose(["python-doc"])
    assert len(doc) > 5000 and all(len(p.split()) >= 8 for p in doc)
    assert not any(re.search(r":(keyword|func|class|ref):`", p) or p.endswith("::") for p in doc)
    assert load_prose(SOURCES)[: len(doc)] == doc


def test_tokenizer_round_trips_and_has_fixed_special_ids(tmp_path):
    tok = train_bpe(TEXTS, vocab_size=300)
    assert len(tok) == 300
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (PAD_ID, BOS_ID, EOS_ID)
    ids = tok("the lazy cat, ünïcode")["input_ids"]
    assert ids[0] == BOS_ID and tok.decode(ids[1:]) == "the lazy cat, ünïcode"
    tok.save_pretrained(tmp_path)
    assert load_tokenizer(tmp_path)("the dog")["input_ids"] == tok("the dog")["input_ids"]
    assert train_bpe(TEXTS, vocab_size=300).get_vocab() == tok.get_vocab()


def test_encode_documents_frames_each_document():
    tok = train_bpe(TEXTS, vocab_size=300)
    stream = encode_documents(tok, ["the cat", "the dog"])
    assert stream.dtype == np.uint16
    first, second = tok("the cat")["input_ids"], tok("the dog")["input_ids"]
    assert stream.tolist() == [*first, EOS_ID, *second, EOS_ID]


def test_vocab_too_small_is_refused():
    with pytest.raises(ValueError, match="vocab_size=100 is below"):
        train_bpe(TEXTS, vocab_size=100)


def test_prose_installed_names_what_is_missing(monkeypatch, capsys):
    from shared.text import prose

    monkeypatch.setattr(prose, "missing_sources", lambda sources=prose.SOURCES: ["kjv"])
    assert prose.prose_installed() is False
    assert "prose sources ['kjv'] are not installed; run `make setup`" in capsys.readouterr().err
    monkeypatch.setattr(prose, "missing_sources", lambda sources=prose.SOURCES: [])
    assert prose.prose_installed() is True
