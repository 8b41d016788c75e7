"""Checks that run before anything is sent, so bad input never costs a request or rate budget.

Each check appends ``FieldError``s to a list instead of raising, so one ``ValidationError`` reports
every bad field of a request at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import attrs
from twitter_text import parse_tweet

from ._errors import FieldError, ValidationError

#: Longest weighted length of a post's text (twitter-text v3).
MAX_WEIGHTED_LENGTH = 280

_ID = re.compile(r"[0-9]{1,19}")
_COLLECTION_ID = re.compile(r"custom-[0-9]{1,19}")

REPLY_SETTINGS = frozenset({"following", "mentionedUsers", "subscribers", "verified"})
CURATE_OPS = frozenset({"add", "remove"})

T = TypeVar("T")


def _measure(text: str) -> tuple[int, bool]:
    """The weighted length of ``text`` and whether X accepts all its characters (twitter-text v3).

    Plain ASCII with no dot and no carriage return holds no URL, no emoji and no invalid character,
    so every character weighs 1 and the costly parse is skipped; everything else goes through
    ``twitter-text-parser``, which runs the upstream conformance tests.
    """
    if text.isascii() and "." not in text and "\r" not in text:
        return len(text), True
    parsed = parse_tweet(text)
    length = int(parsed.weightedLength)
    return length, bool(parsed.valid) or length > MAX_WEIGHTED_LENGTH or length == 0


def weighted_length(text: str) -> int:
    """The weighted length of ``text`` as X counts it: 280 is the most a post may have."""
    return _measure(text)[0]


def check_text(errors: list[FieldError], field: str, text: object) -> None:
    if not isinstance(text, str):
        errors.append(FieldError(field, f"must be a string, got {type(text).__name__}"))
        return
    length, acceptable = _measure(text)
    if length == 0:
        errors.append(FieldError(field, "must not be empty"))
    elif length > MAX_WEIGHTED_LENGTH:
        errors.append(FieldError(field, f"weighted length {length} exceeds {MAX_WEIGHTED_LENGTH}"))
    elif not acceptable:
        errors.append(FieldError(field, "contains characters X does not accept"))


def check_id(errors: list[FieldError], field: str, value: object) -> None:
    if not isinstance(value, str) or _ID.fullmatch(value) is None:
        errors.append(FieldError(field, f"must be a numeric id of 1 to 19 digits, got {value!r}"))


def check_collection_id(errors: list[FieldError], field: str, value: object) -> None:
    if not isinstance(value, str) or _COLLECTION_ID.fullmatch(value) is None:
        errors.append(FieldError(field, f"must look like 'custom-<digits>', got {value!r}"))


def check_ids(errors: list[FieldError], field: str, values: object, low: int, high: int) -> None:
    if not isinstance(values, tuple):
        errors.append(FieldError(field, f"must be a list of ids, got {type(values).__name__}"))
        return
    if not low <= len(values) <= high:
        errors.append(FieldError(field, f"must hold {low} to {high} ids, got {len(values)}"))
    for i, value in enumerate(values):
        check_id(errors, f"{field}[{i}]", value)


def check_choice(errors: list[FieldError], field: str, value: object, choices: frozenset[str]) -> None:
    if not isinstance(value, str) or value not in choices:
        errors.append(FieldError(field, f"must be one of {', '.join(sorted(choices))}, got {value!r}"))


def check_range(errors: list[FieldError], field: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        errors.append(FieldError(field, f"must be a whole number from {low} to {high}, got {value!r}"))


def check_bool(errors: list[FieldError], field: str, value: object) -> None:
    if not isinstance(value, bool):
        errors.append(FieldError(field, f"must be true or false, got {value!r}"))


def raise_if(errors: list[FieldError]) -> None:
    if errors:
        raise ValidationError(errors)


def to_id(value: object) -> object:
    """Accept an int id as its decimal string; anything else is kept for the checks to judge."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def to_tuple(item: Callable[[Any], Any] = lambda v: v) -> Callable[[object], object]:
    """A converter that turns a list (not a lone string) into a tuple, converting each item."""

    def convert(value: object) -> object:
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
            return value
        return tuple(item(v) for v in value)

    return convert


@attrs.frozen
class Invalid:
    """What a nested field's converter leaves when its value could not be built; reported by the parent."""

    errors: tuple[FieldError, ...]


def nested(cls: type[T]) -> Callable[[object], T | Invalid | None]:
    """A converter that accepts ``cls``, a dict of its fields, or ``None``."""
    names = frozenset(a.name for a in attrs.fields(cls))  # type: ignore[arg-type]

    def convert(value: object) -> T | Invalid | None:
        if value is None or isinstance(value, cls):
            return value
        if not isinstance(value, Mapping):
            kind = type(value).__name__
            return Invalid((FieldError("", f"must be {cls.__name__} or a dict, got {kind}"),))
        unknown = sorted(str(k) for k in value if k not in names)
        if unknown:
            return Invalid((FieldError("", f"unknown keys {', '.join(unknown)}"),))
        try:
            return cls(**value)
        except ValidationError as exc:
            return Invalid(exc.errors)
        except TypeError as exc:  # a required key is missing
            message = str(exc).split("() ", 1)[-1]
            return Invalid((FieldError("", message),))

    return convert


def check_nested(errors: list[FieldError], field: str, value: object) -> bool:
    """Report the errors a ``nested`` converter left under ``field``; true when the value is good."""
    if isinstance(value, Invalid):
        errors.extend(FieldError(f"{field}.{e.field}" if e.field else field, e.message) for e in value.errors)
        return False
    return True
