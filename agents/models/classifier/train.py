"""Trains the classifier agent's torch model on the router's examples and writes its weights.

    python agents/models/classifier/train.py    # needs torch and numpy (the `torch` resolve)

Multinomial logistic regression: one linear layer over the router's featuriser vectors, full-batch
Adam, seed 0, one CPU thread. The weights are saved with numpy (`.npy`, no pickle, no clock in
the bytes), one float32 row per label: the weights, then the bias.
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
# `agents/models` is the source root of router_model and classifier_model; running this file
# directly puts only this directory on sys.path.
sys.path.insert(0, str(HERE.parent))

from classifier_model import LABELS_FILE, WEIGHTS_FILE, Classifier  # noqa: E402

from router_model.featurize import FEATURIZER, featurize  # noqa: E402

TRAINING_DATA = HERE.parent / "router" / "training_data.jsonl"
STEPS = 300


def train(data: Path, out: Path) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    examples = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines() if line]
    labels = sorted({example["intent"] for example in examples})
    features = torch.from_numpy(np.stack([featurize(example["text"]) for example in examples]))
    targets = torch.tensor([labels.index(example["intent"]) for example in examples])
    linear = torch.nn.Linear(features.shape[1], len(labels))
    optimizer = torch.optim.Adam(linear.parameters(), lr=0.05)
    for _ in range(STEPS):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(linear(features), targets)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        matrix = torch.cat([linear.weight, linear.bias[:, None]], dim=1).numpy()
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / WEIGHTS_FILE, matrix.astype(np.float32), allow_pickle=False)
    meta = {"featurizer": FEATURIZER, "labels": labels}
    (out / LABELS_FILE).write_bytes(json.dumps(meta, indent=2, sort_keys=True).encode() + b"\n")
    accuracy = (linear(features).argmax(dim=1) == targets).float().mean().item()
    print(f"loss {loss.item():.4f}, training accuracy {accuracy:.3f}", file=sys.stderr)


def main() -> int:
    train(TRAINING_DATA, HERE)
    model = Classifier.load(HERE, "cpu")
    print(f"wrote {WEIGHTS_FILE} ({model.version}) and {LABELS_FILE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
