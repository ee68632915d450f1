"""Text → hashed character n-gram vector, computed identically on every machine.

Buckets come from blake2b rather than Python's `hash()`, which is salted per process. Counts are
integers, so the squared norm is an exact integer and the L2 normalisation is a single IEEE
division per element: the float64 vector is bit-identical everywhere, which is what makes the
trained weights reproducible.
"""

import hashlib
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

BUCKETS = 2**16
CHAR_NGRAMS = (3, 4, 5)
# Stored beside the weights; a model trained with another featuriser is refused at load time.
FEATURIZER = f"blake2b-char{CHAR_NGRAMS[0]}-{CHAR_NGRAMS[-1]}+words/{BUCKETS}/v1"

_NON_WORD = re.compile(r"[^\w]+")


def tokens(text: str) -> list[str]:
    """Word unigrams plus character n-grams of the space-padded, case-folded words."""
    words = _NON_WORD.sub(" ", text.casefold()).split()
    padded = f" {' '.join(words)} "
    grams = [f"w:{word}" for word in words]
    for n in CHAR_NGRAMS:
        grams.extend(f"c:{padded[i:i + n]}" for i in range(len(padded) - n + 1))
    return grams


def bucket(token: str) -> int:
    """A token's bucket: stable across processes, machines and Python versions."""
    digest = hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % BUCKETS


def featurize(text: str, dtype: npt.DTypeLike = np.float32) -> npt.NDArray[np.floating[Any]]:
    """The L2-normalised bucket counts of `text` (all zeros for text without words)."""
    counts = Counter(bucket(token) for token in tokens(text))
    vector = np.zeros(BUCKETS, dtype=np.float64)
    if counts:
        indices = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
        values = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        vector[indices] = values / math.sqrt(sum(c * c for c in counts.values()))
    return vector.astype(dtype, copy=False)


def check_trained_with(featurizer: str, labels_file: Path) -> None:
    """Refuse a model made with another featuriser: its weights expect other vectors."""
    if featurizer != FEATURIZER:
        raise ValueError(
            f"{labels_file}: trained with featuriser {featurizer!r}, "
            f"this code computes {FEATURIZER!r}; retrain the model"
        )
