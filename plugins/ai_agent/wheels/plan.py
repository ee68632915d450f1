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
from .errors import WheelsError
from .installed import InstalledDistribution, InstalledFile

MIB = 1 << 20
DEFAULT_THRESHOLD = 64 * MIB
BIG = "big"
SMALL = "small"
SHARED_LAYER_NAME = "site-packages"


class DistributionConflict(WheelsError):
    """Two distributions install one path with different contents, or a file where the other
    needs a directory; layers would silently shadow one."""


@dataclass(frozen=True)
class PlannedLayer:
    """One layer: its name (also its output directory), kind and distributions by name."""

    name: str
    kind: str
    distributions: Tuple[InstalledDistribution, ...]
    # Entries of no distribution (the virtual environment's own files), first.
    extra: Tuple[Entry, ...] = ()

    def entries(self) -> List[Entry]:
        return [*self.extra, *(entry for dist in self.distributions for entry in dist.entries())]


def plan_layers(
    distributions: Sequence[InstalledDistribution],
    threshold: int = DEFAULT_THRESHOLD,
    shared_entries: Sequence[Entry] = (),
) -> List[PlannedLayer]:
    """Big distributions (installed size > `threshold` bytes) alone, by name; then the rest,
    with `shared_entries`, in one layer.
    A file that several distributions install with the same bytes and mode (the `nvidia/`
    namespace's `__init__.py` of every nvidia-* wheel) is written once, by the first of them in
    this order; the same path with other bytes is refused."""
    by_name = sorted(distributions, key=lambda dist: dist.project)
    big = [dist for dist in by_name if dist.size > threshold]
    small = [dist for dist in by_name if dist.size <= threshold]
    big, small = _install_shared_files_once(big, small)
    check_no_file_under_a_file([*big, *small])
    layers = [PlannedLayer(f"{SHARED_LAYER_NAME}-{dist.project}", BIG, (dist,)) for dist in big]
    if small or shared_entries:
        layers.append(PlannedLayer(SHARED_LAYER_NAME, SMALL, tuple(small), tuple(shared_entries)))
    return layers


def _install_shared_files_once(
    big: List[InstalledDistribution], small: List[InstalledDistribution]
) -> Tuple[List[InstalledDistribution], List[InstalledDistribution]]:
    owners: Dict[str, Tuple[InstalledDistribution, InstalledFile]] = {}
    shared: Dict[str, List[str]] = {}
    for dist in [*big, *small]:
        for installed in dist.files:
            owner, owned = owners.setdefault(installed.path, (dist, installed))
            if owner is dist:
                continue
            if (owned.sha256, owned.mode) != (installed.sha256, installed.mode):
                raise DistributionConflict(
                    f"{installed.path} is installed by both {owner.wheel} and {dist.wheel} with"
                    " different contents, so the image would depend on which one is unpacked"
                    " last. Remove one of the two projects from the resolve (they are"
                    " alternatives, e.g. `jwt` and `PyJWT`) and regenerate the lockfile."
                )
            shared.setdefault(dist.project, []).append(installed.path)

    def deduplicated(dist: InstalledDistribution) -> InstalledDistribution:
        paths = shared.get(dist.project)
        if not paths:
            return dist
        kept_by = sorted({owners[path][0].project for path in paths})
        note = (
            f"{len(paths)} file(s) with the same bytes as in {', '.join(kept_by)} are installed"
            f" once, by the first layer: {', '.join(sorted(paths)[:3])}"
            + (" ..." if len(paths) > 3 else "")
        )
        return dist.without(paths, note)

    return [deduplicated(dist) for dist in big], [deduplicated(dist) for dist in small]


def check_no_file_under_a_file(distributions: Sequence[InstalledDistribution]) -> None:
    """Refuse a file where another distribution needs a directory."""
    owners = {installed.path: dist.project for dist in distributions for installed in dist.files}
    for path, owner in owners.items():
        parent = path.rpartition("/")[0]
        while parent:
            if parent in owners:
                raise DistributionConflict(
                    f"{parent} is a file of {owners[parent]} but a directory of {owner}"
                )
            parent = parent.rpartition("/")[0]
