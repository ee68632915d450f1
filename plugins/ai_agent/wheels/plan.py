"""Group installed distributions into layers so that big ones keep their digests.

Every distribution larger than the threshold (torch, the nvidia-* CUDA wheels) gets a layer of
its own, and all the others share one layer, after the big ones. A distribution's layer depends
only on its own files, so bumping or adding a small requirement rebuilds the shared layer and
leaves every big layer (and its multi-GB upload) as it was; a big distribution's version bump
changes its layer only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

from ..oci.layer import Entry
from .install import InstalledDistribution

MIB = 1 << 20
DEFAULT_THRESHOLD = 64 * MIB
BIG = "big"
SMALL = "small"
SHARED_LAYER_NAME = "site-packages"


class DistributionConflict(Exception):
    """Two distributions install the same path; layers would silently shadow one."""


@dataclass(frozen=True)
class PlannedLayer:
    """One layer: its name (also its output directory), kind and distributions by name."""

    name: str
    kind: str
    distributions: Tuple[InstalledDistribution, ...]

    def entries(self) -> List[Entry]:
        return [entry for dist in self.distributions for entry in dist.entries()]


def plan_layers(
    distributions: Sequence[InstalledDistribution], threshold: int = DEFAULT_THRESHOLD
) -> List[PlannedLayer]:
    """Big distributions (installed size > `threshold` bytes) alone, by name; then the rest."""
    check_conflicts(distributions)
    by_name = sorted(distributions, key=lambda dist: dist.project)
    layers = [
        PlannedLayer(f"{SHARED_LAYER_NAME}-{dist.project}", BIG, (dist,))
        for dist in by_name
        if dist.size > threshold
    ]
    small = tuple(dist for dist in by_name if dist.size <= threshold)
    if small:
        layers.append(PlannedLayer(SHARED_LAYER_NAME, SMALL, small))
    return layers


def check_conflicts(distributions: Sequence[InstalledDistribution]) -> None:
    """Refuse a file path installed by two distributions, or a file where another
    distribution needs a directory."""
    owners: Dict[str, str] = {}
    for dist in distributions:
        for installed in dist.files:
            other = owners.setdefault(installed.path, dist.project)
            if other != dist.project:
                raise DistributionConflict(
                    f"{installed.path} is installed by both {other} and {dist.project}"
                )
    for path, owner in owners.items():
        parent = path.rpartition("/")[0]
        while parent:
            if parent in owners:
                raise DistributionConflict(
                    f"{parent} is a file of {owners[parent]} but a directory of {owner}"
                )
            parent = parent.rpartition("/")[0]
