"""The one cattrs converter: request classes to wire bodies, response JSON to result models.

It is built (and cattrs imported) on first use, not with ``import asyncx``: a process that never sends
never pays for it.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, TypeVar

from ._models import CollectionChange, CreateTweet, CurateCollection, EditOptions, Geo, Media, Poll, Reply

if TYPE_CHECKING:
    import cattrs

__all__ = ["converter", "invalid_structure", "structure", "unstructure"]

T = TypeVar("T")


def _strict_str(value: Any, _: type) -> str:
    # cattrs would make a string of anything (an object where X sends an id); X's answers hold strings.
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


@functools.cache
def converter() -> cattrs.Converter:
    """The converter. Request bodies leave out fields at their defaults: a body carries only what the
    caller set."""
    import cattrs
    from cattrs.gen import make_dict_unstructure_fn

    made = cattrs.Converter()
    # Parts first: a class's generated hook captures the hooks of its fields when it is made.
    for cls in (Reply, Media, Poll, Geo, EditOptions, CollectionChange, CreateTweet, CurateCollection):
        made.register_unstructure_hook(cls, make_dict_unstructure_fn(cls, made, _cattrs_omit_if_default=True))
    made.register_structure_hook(str, _strict_str)
    return made


def invalid_structure() -> type[Exception]:
    """The error cattrs raises for data of the wrong shape."""
    import cattrs

    return cattrs.BaseValidationError


def unstructure(obj: Any) -> Any:
    """A request (or part of one) as JSON-ready data."""
    return converter().unstructure(obj)


def structure(data: Any, cls: type[T]) -> T:
    """Response data as a result model."""
    return converter().structure(data, cls)
