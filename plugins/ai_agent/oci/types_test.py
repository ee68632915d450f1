from __future__ import annotations

import pytest

from .types import Platform


@pytest.mark.parametrize(
    "first, second, same",
    [
        ("linux/arm64", "linux/arm64/v8", True),
        ("linux/arm64", "linux/arm64/v7", False),
        ("linux/arm", "linux/arm/v7", True),
        ("linux/arm", "linux/arm/v6", False),
        ("linux/amd64", "linux/amd64", True),
        ("linux/amd64", "linux/arm64", False),
        ("linux/amd64", "windows/amd64", False),
    ],
)
def test_an_omitted_variant_is_the_architectures_default(
    first: str, second: str, same: bool
) -> None:
    assert Platform.parse(first).matches(Platform.parse(second)) is same
    assert Platform.parse(second).matches(Platform.parse(first)) is same
