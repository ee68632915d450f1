"""Trains the intent router and writes its weights reproducibly.

    python agents/models/router/train.py           # rewrite the weights beside this script
    python agents/models/router/train.py --check   # retrain into a temp dir, compare sha256

The weights are the per-intent sums of the examples' unit vectors, normalised to unit length
(a centroid classifier). Every step is exact or a single IEEE operation in a fixed order: the sums
add whole vectors element by element in file order, the norms use `math.fsum`, and nothing goes
through BLAS, whose reduction order depends on the CPU and thread count. So the files are
byte-identical on every run and machine, and `--check` can hold the committed weights to that.
"""

import argparse
import hashlib
import json
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
# `agents/models` is the source root holding router_model; running this file directly puts only
# this directory on sys.path.
sys.path.insert(0, str(HERE.parent))

from router_model.featurize import BUCKETS, FEATURIZER, featurize  # noqa: E402
from router_model.model import CENTROIDS_FILE, LABELS_FILE  # noqa: E402

TRAINING_DATA = HERE / "training_data.jsonl"


def train(data: Path, out: Path) -> None:
    """Writes the centroids (float32, one row per label) and the labels file into `out`."""
    examples = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines() if line]
    labels = sorted({example["intent"] for example in examples})
    sums = np.zeros((len(labels), BUCKETS), dtype=np.float64)
    for example in examples:
        sums[labels.index(example["intent"])] += featurize(example["text"], np.float64)
    centroids = np.stack([row / math.sqrt(math.fsum(row * row)) for row in sums])
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / CENTROIDS_FILE, centroids.astype(np.float32), allow_pickle=False)
    meta = {"featurizer": FEATURIZER, "labels": labels}
    (out / LABELS_FILE).write_bytes(json.dumps(meta, indent=2, sort_keys=True).encode() + b"\n")


def sha256(path: Path) -> str:
    """The hex sha256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> int:
    """Trains into this directory, or with `--check` verifies the committed weights."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="retrain and compare, write nothing")
    args = parser.parse_args()
    if not args.check:
        train(TRAINING_DATA, HERE)
        for name in (CENTROIDS_FILE, LABELS_FILE):
            print(f"{sha256(HERE / name)}  {name}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        train(TRAINING_DATA, Path(tmp))
        mismatched = 0
        for name in (CENTROIDS_FILE, LABELS_FILE):
            committed = HERE / name
            expected = sha256(Path(tmp) / name)
            actual = sha256(committed) if committed.exists() else "missing"
            status = "ok" if actual == expected else f"MISMATCH (committed {actual})"
            print(f"{expected}  {name}: {status}")
            mismatched += actual != expected
    return 1 if mismatched else 0


if __name__ == "__main__":
    sys.exit(main())
