"""Serving side of the router: cosine similarity of a request against per-intent centroids."""

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from router_model.featurize import BUCKETS, check_trained_with, featurize

CENTROIDS_FILE = "router-centroids.npy"
LABELS_FILE = "router-labels.json"


@dataclass(frozen=True, eq=False)
class Router:
    """Unit-length intent centroids (one row per label) and the labels they belong to."""

    labels: tuple[str, ...]
    centroids: npt.NDArray[np.float32]
    # The first 12 hex digits of the centroids file's sha256: which weights answered a request.
    version: str

    @classmethod
    def load(cls, directory: str | Path) -> "Router":
        """Reads the weights `train.py` wrote, refusing ones made by a different featuriser."""
        directory = Path(directory)
        meta = json.loads((directory / LABELS_FILE).read_text(encoding="utf-8"))
        check_trained_with(meta["featurizer"], directory / LABELS_FILE)
        raw = (directory / CENTROIDS_FILE).read_bytes()
        centroids = np.load(io.BytesIO(raw), allow_pickle=False)
        labels = tuple(meta["labels"])
        if centroids.dtype != np.float32 or centroids.shape != (len(labels), BUCKETS):
            raise ValueError(
                f"{directory / CENTROIDS_FILE}: expected float32 {(len(labels), BUCKETS)}, "
                f"found {centroids.dtype} {centroids.shape}"
            )
        return cls(labels, centroids, hashlib.sha256(raw).hexdigest()[:12])

    def route_many(self, texts: list[str]) -> list[tuple[str, float]]:
        """The best intent and its cosine score for each text; ties go to the earlier label."""
        if not texts:
            return []
        scores = np.stack([featurize(text) for text in texts]) @ self.centroids.T
        best = scores.argmax(axis=1)  # argmax returns the first maximum: label order breaks ties
        return [(self.labels[i], float(row[i])) for i, row in zip(best, scores)]

    def route(self, text: str) -> tuple[str, float]:
        """The best intent for one text and its cosine score in [0, 1]."""
        return self.route_many([text])[0]
