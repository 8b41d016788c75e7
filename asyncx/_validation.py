"""Checks that run before anything is sent, so bad input never costs a request or rate budget.

Each check appends ``FieldError``s to a list instead of raising, so one ``ValidationError`` reports
every bad field of a request at once.
"""

from __future__ import annotations

import functools
import math
import re
import sys
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import attrs

from ._errors import FieldError, ValidationError

#: Longest weighted length of a post's text (twitter-text v3).
MAX_WEIGHTED_LENGTH = 280

_ID = re.compile(r"[0-9]{1,19}")
_COLLECTION_ID = re.compile(r"custom-[0-9]{1,19}")
_PLACE_ID = re.compile(r"[0-9A-Za-z]{1,64}")
#: What a credential may hold: visible ASCII, so it can never split or smuggle a header.
_CREDENTIAL = re.compile(r"[\x21-\x7e]{1,4096}")
#: Characters no field X takes may hold: lone surrogates (not encodable) and C0 controls but tab and
#: newlines (NUL and the like are refused by X or truncate the field).
_FORBIDDEN = re.compile(r"[\ud800-\udfff\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

REPLY_SETTINGS = frozenset({"following", "mentionedUsers", "subscribers", "verified"})
CURATE_OPS = frozenset({"add", "remove"})

T = TypeVar("T")


@functools.cache
def _parse_tweet() -> Callable[[str], Any]:
    """twitter-text-parser's ``parse_tweet``, imported on first use: it costs about 400 ms to import.

    It reads its emoji list through ``pkg_resources``, which is slow to import and deprecated; a shim with
    just ``resource_string`` stands in for it while twitter_text loads, so ``pkg_resources`` never does.
    """
    shim = None
    if "pkg_resources" not in sys.modules:
        shim = types.ModuleType("pkg_resources")

        import importlib.resources
        import importlib.util

        def resource_string(module: str, name: str) -> bytes:
            # As pkg_resources does: a resource beside a module lives in the module's package.
            spec = importlib.util.find_spec(module)
            package = (
                module if spec is not None and spec.submodule_search_locations else module.rpartition(".")[0]
            )
            return importlib.resources.files(package).joinpath(name).read_bytes()

        shim.resource_string = resource_string  # type: ignore[attr-defined]
        sys.modules["pkg_resources"] = shim
    try:
        from twitter_text import parse_tweet
    finally:
        if shim is not None and sys.modules.get("pkg_resources") is shim:
            del sys.modules["pkg_resources"]
    return parse_tweet  # type: ignore[no-any-return]


#: What every URL twitter-text finds holds: a dot before its top-level domain (or an address's digit).
_DOT_THEN_NAME = re.compile(r"\.[0-9A-Za-z]")


def _measure(text: str) -> tuple[int, bool]:
    """The weighted length of ``text`` and whether X accepts all its characters (twitter-text v3).

    Plain ASCII with no carriage return and no dot followed by a letter or digit (so a sentence's full
    stops are fine) holds no URL, no emoji and no invalid character: every character weighs 1 and the
    costly parse is skipped. Everything else goes through ``twitter-text-parser``, which runs the
    upstream conformance tests.
    """
    if text.isascii() and "\r" not in text and ("." not in text or _DOT_THEN_NAME.search(text) is None):
        return len(text), True
    parsed = _parse_tweet()(text)
    length = int(parsed.weightedLength)
    return length, bool(parsed.valid) or length > MAX_WEIGHTED_LENGTH or length == 0


def weighted_length(text: str) -> int:
    """The weighted length of ``text`` as X counts it: 280 is the most a post may have."""
    return _measure(text)[0]


def check_plain(errors: list[FieldError], field: str, value: object, longest: int) -> bool:
    """A string of 1 to ``longest`` characters with no lone surrogate and no control character."""
    if not isinstance(value, str):
        errors.append(FieldError(field, f"must be a string, got {type(value).__name__}"))
        return False
    if not 1 <= len(value) <= longest:
        errors.append(FieldError(field, f"must be 1 to {longest} characters, got {len(value)}"))
        return False
    bad = _FORBIDDEN.search(value)
    if bad is not None:
        char = bad.group()
        errors.append(FieldError(field, f"contains U+{ord(char):04X}, which X does not accept"))
        return False
    return True


def check_text(errors: list[FieldError], field: str, text: object) -> None:
    if not check_plain(errors, field, text, 100_000):
        return
    assert isinstance(text, str)
    if text.isspace():
        errors.append(FieldError(field, "must not be only white space"))
        return
    length, acceptable = _measure(text)
    if length == 0:
        errors.append(FieldError(field, "must not be empty"))
    elif length > MAX_WEIGHTED_LENGTH:
        errors.append(FieldError(field, f"weighted length {length} exceeds {MAX_WEIGHTED_LENGTH}"))
    elif not acceptable:
        errors.append(FieldError(field, "contains characters X does not accept"))


def check_id(errors: list[FieldError], field: str, value: object) -> None:
    if not is_id(value):
        shown = value[:40] if isinstance(value, str) else value
        errors.append(FieldError(field, f"must be a numeric id of 1 to 19 digits, got {shown!r}"))


def check_place_id(errors: list[FieldError], field: str, value: object) -> None:
    if not isinstance(value, str) or _PLACE_ID.fullmatch(value) is None:
        shown = value[:40] if isinstance(value, str) else value
        errors.append(FieldError(field, f"must be a place id of 1 to 64 letters and digits, got {shown!r}"))


def check_credential(field: str, value: object) -> None:
    """Raise unless ``value`` is a usable secret: visible ASCII only (the value is never shown)."""
    if not isinstance(value, str):
        raise ValidationError(f"must be a string, got {type(value).__name__}", field=field)
    if _CREDENTIAL.fullmatch(value) is None:
        raise ValidationError(
            "must be 1 to 4096 visible ASCII characters (no spaces, line breaks or other text)", field=field
        )


def is_id(value: object) -> bool:
    """Whether ``value`` is an X id as the wire carries it: 1 to 19 ASCII digits."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def check_collection_id(errors: list[FieldError], field: str, value: object) -> None:
    if not isinstance(value, str) or _COLLECTION_ID.fullmatch(value) is None:
        errors.append(FieldError(field, f"must look like 'custom-<digits>', got {value!r}"))


def check_ids(errors: list[FieldError], field: str, values: object, low: int, high: int) -> None:
    if not isinstance(values, tuple):
        errors.append(FieldError(field, f"must be a list of ids, got {type(values).__name__}"))
        return
    if not low <= len(values) <= high:
        errors.append(FieldError(field, f"must hold {low} to {high} ids, got {len(values)}"))
        return
    for i, value in enumerate(values):
        check_id(errors, f"{field}[{i}]", value)


def check_choice(errors: list[FieldError], field: str, value: object, choices: frozenset[str]) -> None:
    if not isinstance(value, str) or value not in choices:
        errors.append(FieldError(field, f"must be one of {', '.join(sorted(choices))}, got {value!r}"))


def check_range(errors: list[FieldError], field: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        errors.append(FieldError(field, f"must be a whole number from {low} to {high}, got {value!r}"))


def check_seconds(
    errors: list[FieldError], field: str, value: object, *, zero: bool = False, infinite: bool = False
) -> None:
    """A number of seconds: positive (or zero, with ``zero``), and finite unless ``infinite``."""
    number = not isinstance(value, bool) and isinstance(value, (int, float))
    if not (number and (value >= 0 if zero else value > 0) and (infinite or value < math.inf)):  # type: ignore[operator]
        kind = "a number of seconds >= 0" if zero else "a positive number of seconds"
        errors.append(FieldError(field, f"must be {kind}, got {value!r}"))


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


def nested(cls: type[T], optional: bool = True) -> Callable[[object], T | Invalid | None]:
    """A converter that accepts ``cls``, a dict of its fields, or (if ``optional``) ``None``."""
    fields = attrs.fields(cls)  # type: ignore[arg-type]
    names = frozenset(a.name for a in fields)
    required = [a.name for a in fields if a.default is attrs.NOTHING]

    def convert(value: object) -> T | Invalid | None:
        if (value is None and optional) or isinstance(value, cls):
            return value
        if not isinstance(value, Mapping):
            kind = type(value).__name__
            return Invalid((FieldError("", f"must be {cls.__name__} or a dict, got {kind}"),))
        unknown = sorted(repr(k)[:40] for k in value if k not in names)
        if unknown:
            return Invalid((FieldError("", f"unknown keys {', '.join(unknown)}"),))
        missing = [name for name in required if name not in value]
        if missing:
            return Invalid(tuple(FieldError(name, "is required") for name in missing))
        try:
            return cls(**value)
        except ValidationError as exc:
            return Invalid(exc.errors)

    return convert


def check_nested(errors: list[FieldError], field: str, value: object) -> bool:
    """Report the errors a ``nested`` converter left under ``field``; true when the value is good."""
    if isinstance(value, Invalid):
        errors.extend(FieldError(f"{field}.{e.field}" if e.field else field, e.message) for e in value.errors)
        return False
    return True
