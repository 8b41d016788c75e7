"""Error bodies from X become the right typed exception, with status, problem, errors and headers."""

import pytest

import asyncx
from asyncx._errors import error_from_response


@pytest.mark.parametrize("host", ["https://api.twitter.com", "https://api.x.com"])
def test_v2_problem_type_matched_on_last_segment_for_both_hosts(host: str) -> None:
    body = {
        "title": "Too Many Requests",
        "type": f"{host}/2/problems/rate-limit-exceeded",
        "detail": "Too Many Requests",
        "status": 429,
    }
    err = error_from_response(429, body, {"x-rate-limit-reset": "100"}, retry_at=12.0)
    assert isinstance(err, asyncx.RateLimited)
    assert err.problem is not None and err.problem.kind == "rate-limit-exceeded"
    assert err.retry_at == 12.0
    assert err.headers["x-rate-limit-reset"] == "100"


def test_duplicate_post_is_duplicate_content_and_forbidden() -> None:
    body = {
        "title": "Forbidden",
        "type": "about:blank",
        "status": 403,
        "detail": "You are not allowed to create a Tweet with duplicate content.",
    }
    err = error_from_response(403, body, {})
    assert type(err) is asyncx.DuplicateContent
    assert isinstance(err, asyncx.Forbidden) and isinstance(err, asyncx.APIError)
    assert "duplicate content" in str(err)


def test_v11_error_list_parsed_with_codes() -> None:
    body = {"errors": [{"code": 187, "message": "Status is a duplicate."}]}
    err = error_from_response(403, body, {})
    assert type(err) is asyncx.DuplicateContent
    assert err.codes == (187,)
    assert err.errors[0].message == "Status is a duplicate."


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, asyncx.APIError),
        (401, asyncx.Unauthorized),
        (403, asyncx.Forbidden),
        (404, asyncx.NotFound),
        (429, asyncx.RateLimited),
        (500, asyncx.ServerError),
        (503, asyncx.ServerError),
    ],
)
def test_status_maps_to_class(status: int, cls: type) -> None:
    err = error_from_response(status, {"errors": [{"code": 32, "message": "x"}]}, {})
    assert type(err) is cls
    assert err.status == status


def test_v2_errors_list_beside_problem_is_kept() -> None:
    body = {
        "title": "Invalid Request",
        "type": "https://api.x.com/2/problems/invalid-request",
        "detail": "One or more parameters to your request was invalid.",
        "errors": [{"message": "text too long", "parameters": {"text": ["..."]}}],
    }
    err = error_from_response(400, body, {})
    assert err.problem is not None and err.problem.kind == "invalid-request"
    assert err.errors[0].parameters == {"text": ["..."]}


def test_non_json_body_still_gives_typed_error() -> None:
    err = error_from_response(502, None, {})
    assert type(err) is asyncx.ServerError and err.problem is None and "502" in str(err)


def test_validation_error_lists_every_field_and_names_the_first() -> None:
    err = asyncx.ValidationError([asyncx.FieldError("a", "bad"), asyncx.FieldError("b", "worse")])
    assert err.field == "a"
    assert str(err) == "a: bad; b: worse"
    assert isinstance(err, ValueError) and isinstance(err, asyncx.XError)


def test_the_error_tree_drawn_in_the_module_docstring_names_every_exported_error() -> None:
    """Every exception class the package exports is in ``_errors.__all__`` and in the drawn tree, under
    its real parent, so the picture a reader trusts cannot drift from the classes."""
    from asyncx import _errors

    exported = {
        name: obj
        for name in asyncx.__all__
        if isinstance(obj := getattr(asyncx, name), type) and issubclass(obj, BaseException)
    }
    assert set(exported) <= set(_errors.__all__)
    drawn: list[tuple[int, type]] = []  # (indent, class), in the order drawn
    for line in (_errors.__doc__ or "").splitlines():
        stripped = line.lstrip(" │├└─")
        name = stripped.split(" ", 1)[0]
        if name in exported:
            drawn.append((len(line) - len(stripped), exported[name]))
    assert {cls for _, cls in drawn} == set(exported.values())
    for i, (indent, cls) in enumerate(drawn):
        above = [parent for depth, parent in drawn[:i] if depth < indent]
        if above:
            assert issubclass(cls, above[-1]), (cls, above[-1])
