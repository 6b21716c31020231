"""Byte-level text corpora for the language-model tasks, split into train and validation.

The default needs no download: the source files of the running interpreter's standard
library, split by file (a file goes wholly to one side, chosen from a hash of its relative
path, so the split is deterministic and the two sides share no file). `load_corpus(PATH)`
takes a directory (its text files, split the same way), WikiText's raw files
(`wiki.train.raw` with `wiki.valid.raw` beside it, detected by name), or a single text file
(its last 5 % validates). Each corpus carries a SHA-256 of both splits, recorded with results.
"""

from __future__ import annotations

import hashlib
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from attnbench.errors import UserError

VALID_PERCENT = 5
TEXT_SUFFIXES = (".py", ".txt", ".md", ".rst", ".raw", ".tokens")


@dataclass(frozen=True)
class Corpus:
    train: bytes
    valid: bytes
    source: str

    @property
    def sha256(self) -> str:
        digest = hashlib.sha256()
        for part in (self.train, self.valid):
            digest.update(len(part).to_bytes(8, "little"))
            digest.update(part)
        return digest.hexdigest()


def goes_to_validation(relative: str) -> bool:
    """Deterministic per-file split: about VALID_PERCENT % of files validate."""
    return int(hashlib.sha256(relative.encode()).hexdigest()[:8], 16) % 100 < VALID_PERCENT


def split_files(root: Path, files: list[Path], source: str) -> Corpus:
    train, valid = [], []
    for path in sorted(files):
        relative = path.relative_to(root).as_posix()
        (valid if goes_to_validation(relative) else train).append(path.read_bytes())
    if not train or not valid:
        raise UserError(f"corpus {source}: too few files to split into train and validation ({len(files)})")
    return Corpus(b"\n".join(train), b"\n".join(valid), source)


def stdlib_corpus() -> Corpus:
    """The standard library's own .py files (not site-packages), split by file."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = [p for p in root.rglob("*.py") if "site-packages" not in p.parts and p.is_file()]
    return split_files(root, files, f"python-stdlib:{root}")


def load_corpus(path: str | Path | None = None) -> Corpus:
    if path is None:
        return stdlib_corpus()
    path = Path(path)
    if path.is_dir():
        files = [p for p in path.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES]
        wiki = [p for p in files if p.name == "wiki.train.raw"]
        if wiki:
            return load_corpus(wiki[0])
        if not files:
            raise UserError(f"corpus {path}: no text files ({', '.join(TEXT_SUFFIXES)}) in it")
        return split_files(path, files, str(path))
    if not path.is_file():
        raise UserError(f"corpus {path}: no such file or directory")
    if path.name == "wiki.train.raw":
        valid = path.with_name("wiki.valid.raw")
        if not valid.is_file():
            raise UserError(f"corpus {path}: WikiText's validation file {valid.name} is not beside it")
        return Corpus(path.read_bytes(), valid.read_bytes(), str(path.parent))
    data = path.read_bytes()
    cut = len(data) * (100 - VALID_PERCENT) // 100
    if cut == 0 or cut == len(data):
        raise UserError(f"corpus {path}: too short to split into train and validation")
    return Corpus(data[:cut], data[cut:], str(path))
