"""Leak keys: one hash per text, equal for texts that differ only in case, whitespace or punctuation, so an
unseen task's examples can be checked against every text a training task could have drawn."""

from __future__ import annotations

import hashlib
import io
import unicodedata
from pathlib import Path
from typing import Iterable

import numpy as np

from .split_files import atomic_write_bytes


def leak_key(text: str) -> str:
    """The text casefolded, without punctuation (Unicode categories P*) and without whitespace."""
    # Whitespace goes too, not only collapsed: copies of one sentence differ in the spaces around punctuation
    # ("it 's" / "it's", "well...done" / "well... done"); collapsing found 73% of vader_movies in
    # rotten_tomatoes, dropping 97%.
    return "".join(char for char in text.casefold() if not (char.isspace() or unicodedata.category(char)[0] == "P"))


def key_hash(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "little")


def corpus_keys(texts: Iterable[str]) -> np.ndarray:
    """Sorted unique 64-bit hashes of the texts' leak keys; a text of punctuation only has no key (it would
    match every other such text)."""
    hashes = {key_hash(key) for key in map(leak_key, texts) if key}
    return np.array(sorted(hashes), dtype=np.uint64)


def write_corpus_keys(path: Path | str, keys: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(keys, dtype=np.uint64), allow_pickle=False)
    atomic_write_bytes(Path(path), buffer.getvalue())


def read_corpus_keys(path: Path | str) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"corpus keys {path} do not exist; run the task preparation step first")
    keys = np.load(path, allow_pickle=False)
    if keys.dtype != np.uint64 or keys.ndim != 1:
        raise ValueError(f"corpus keys {path} hold {keys.dtype} of shape {keys.shape}, not a uint64 vector; "
                         "delete the task's folder and rerun its preparation")
    return keys
