"""JSON values as rule values: Pants hashes what rules pass each other, so dicts and lists travel
frozen (`FrozenDict`, tuples) and are thawed again where they are written out."""

from __future__ import annotations

from typing import Any, Mapping

from pants.util.frozendict import FrozenDict


def frozen(value: Mapping[str, Any]) -> FrozenDict[str, Any]:
    return FrozenDict.deep_freeze(value)


def thawed(value: Any) -> Any:
    """`value` with every `FrozenDict` a dict and every tuple a list again, as JSON has them."""
    if isinstance(value, Mapping):
        return {key: thawed(item) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        return [thawed(item) for item in value]
    return value
