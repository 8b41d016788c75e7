"""The one cattrs converter: request classes to wire bodies, response JSON to result models."""

from __future__ import annotations

from typing import Any, TypeVar

import cattrs
from cattrs.gen import make_dict_unstructure_fn

from ._models import CollectionChange, CreateTweet, CurateCollection, EditOptions, Geo, Media, Poll, Reply

__all__ = ["converter", "structure", "unstructure"]

T = TypeVar("T")

#: Leaves out fields at their defaults, so a body carries only what the caller set.
converter = cattrs.Converter()

# Parts first: a class's generated hook captures the hooks of its fields when it is made.
for _cls in (Reply, Media, Poll, Geo, EditOptions, CollectionChange, CreateTweet, CurateCollection):
    converter.register_unstructure_hook(
        _cls, make_dict_unstructure_fn(_cls, converter, _cattrs_omit_if_default=True)
    )


def _strict_str(value: Any, _: type) -> str:
    # cattrs would make a string of anything (an object where X sends an id); X's answers hold strings.
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


converter.register_structure_hook(str, _strict_str)


def unstructure(obj: Any) -> Any:
    """A request (or part of one) as JSON-ready data."""
    return converter.unstructure(obj)


def structure(data: Any, cls: type[T]) -> T:
    """Response data as a result model."""
    return converter.structure(data, cls)
