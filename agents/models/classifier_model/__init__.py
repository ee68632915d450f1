"""The classifier agent's model: one linear layer in torch over the router's featuriser vectors,
trained by `agents/models/classifier/train.py` on the router's examples.

Serving and training share the featuriser (`router_model.featurize`) and this loader, so a model
made for other vectors is refused at load time instead of answering nonsense.
"""

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import torch

from router_model.featurize import BUCKETS, check_trained_with, featurize

# One float32 row per label: BUCKETS weights, then the bias.
WEIGHTS_FILE = "classifier-weights.npy"
LABELS_FILE = "classifier-labels.json"


class Classifier:
    """A loaded model on `device` ("cpu" or "cuda"), and which weights file it came from."""

    def __init__(
        self, labels: tuple[str, ...], linear: torch.nn.Linear, version: str, device: str
    ) -> None:
        self.labels = labels
        self.linear = linear
        self.version = version
        self.device = device

    @classmethod
    def load(cls, directory: str | Path, device: str) -> "Classifier":
        directory = Path(directory)
        meta = json.loads((directory / LABELS_FILE).read_text(encoding="utf-8"))
        check_trained_with(meta["featurizer"], directory / LABELS_FILE)
        labels = tuple(meta["labels"])
        raw = (directory / WEIGHTS_FILE).read_bytes()
        matrix = np.load(io.BytesIO(raw), allow_pickle=False)
        if matrix.dtype != np.float32 or matrix.shape != (len(labels), BUCKETS + 1):
            raise ValueError(
                f"{directory / WEIGHTS_FILE}: expected float32 {(len(labels), BUCKETS + 1)}, "
                f"found {matrix.dtype} {matrix.shape}"
            )
        linear = torch.nn.Linear(BUCKETS, len(labels))
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(matrix[:, :BUCKETS]))
            linear.bias.copy_(torch.from_numpy(matrix[:, BUCKETS]))
        linear.to(device).eval()
        return cls(labels, linear, hashlib.sha256(raw).hexdigest()[:12], device)

    def route(self, text: str) -> tuple[str, float]:
        """The most probable intent of `text` and its probability."""
        with torch.inference_mode():
            features = torch.from_numpy(featurize(text)).to(self.device)
            probability, index = torch.softmax(self.linear(features), dim=0).max(dim=0)
        return self.labels[int(index)], float(probability)
