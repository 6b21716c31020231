"""The language-model corpora: deterministic splits with no shared file."""

from __future__ import annotations

import pytest

from attnbench.errors import UserError
from attnbench.tasks.corpus import goes_to_validation, load_corpus, stdlib_corpus


def test_stdlib_corpus_is_deterministic_and_splits_by_file():
    a, b = stdlib_corpus(), stdlib_corpus()
    assert a.sha256 == b.sha256
    assert len(a.valid) > 100_000 and len(a.train) > 10 * len(a.valid)


def test_directory_split_puts_each_file_on_one_side(tmp_path):
    names = [f"f{i:03d}.txt" for i in range(200)]
    for name in names:
        (tmp_path / name).write_text(f"<{name}>" * 3)
    corpus = load_corpus(tmp_path)
    valid = [n for n in names if goes_to_validation(n)]
    assert 0 < len(valid) < 40
    for name in names:
        marker = f"<{name}>".encode()
        in_valid, in_train = marker in corpus.valid, marker in corpus.train
        assert in_valid != in_train and in_valid == (name in valid)


def test_wikitext_raw_files_are_detected_by_name(tmp_path):
    (tmp_path / "wiki.train.raw").write_text("train text " * 10)
    (tmp_path / "wiki.valid.raw").write_text("valid text " * 3)
    for given in (tmp_path, tmp_path / "wiki.train.raw"):
        corpus = load_corpus(given)
        assert corpus.train == b"train text " * 10 and corpus.valid == b"valid text " * 3


def test_a_single_file_validates_on_its_tail(tmp_path):
    path = tmp_path / "book.txt"
    path.write_bytes(bytes(range(200)))
    corpus = load_corpus(path)
    assert corpus.train + corpus.valid == bytes(range(200)) and len(corpus.valid) == 10


def test_a_missing_corpus_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load_corpus(tmp_path / "nothing")
    (tmp_path / "wiki.train.raw").write_text("x")
    with pytest.raises(UserError, match=r"wiki\.valid\.raw"):
        load_corpus(tmp_path / "wiki.train.raw")
