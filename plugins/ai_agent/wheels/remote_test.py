from __future__ import annotations

from testkit.components import missing_component

from ..debian.download import DownloadError
from .install import InstallLayout, list_wheel
from .remote import RangeFile, WheelArchives

# torch 2.5.1 for CPython 3.11 on x86_64, as `cuda/testdata/torch-2.5.1-pypi.lock` pins it.
TORCH_URL = (
    "https://files.pythonhosted.org/packages/d1/35/e8b2daf02ce933e4518e6f5682c72fd0ed66c15910ea1fb"
    "4168f442b71c4/torch-2.5.1-cp311-cp311-manylinux1_x86_64.whl"
)
TORCH_SHA256 = "de5b7d6740c4b636ef4db92be922f0edc425b65ed78c5076c43c42d362a45457"
TORCH_SIZE = 906474467


def test_torch_is_listed_from_pypi_by_reading_about_a_megabyte_of_it() -> None:
    """What lets grouping finish before any wheel is downloaded: listing a real 906 MB wheel
    where PyPI serves it reads its directory and `.dist-info` by ranges."""
    layout = InstallLayout("opt/agent", "/usr/bin/python3.11", "3.11")
    try:
        with WheelArchives() as archives:
            archives.open_all([(TORCH_URL, TORCH_URL.rsplit("/", 1)[1], TORCH_SHA256)])
            archive = archives[TORCH_URL]
            listed = list_wheel(archive, layout)
    except DownloadError as error:
        missing_component("PyPI", f"network access to files.pythonhosted.org ({error})")
    assert isinstance(archive, RangeFile) and archive.size == TORCH_SIZE
    assert (listed.project, listed.version) == ("torch", "2.5.1")
    site = layout.site_packages
    assert f"{site}/torch/__init__.py" in listed.files and "opt/agent/bin/torchrun" in listed.files
    # 1.75 GB unpacked: its own layer at any threshold below.
    assert listed.unpacked_size > 1_700_000_000
    assert archive.requests <= 6 and archive.received < 4 << 20, (
        archive.requests,
        archive.received,
    )
