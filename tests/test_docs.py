"""Every public name says what it does, and the API reference under ``docs/`` lists every one of them.

The docs site is built by ``nox -s docs`` (``mkdocs build --strict``); these checks need neither mkdocs
nor the network, so the suite catches an undocumented name or a reference page that forgot one.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import asyncx
import asyncx.bulk
import asyncx.testing

PACKAGES = (asyncx, asyncx.testing, asyncx.bulk)
DOCS = Path(__file__).resolve().parent.parent / "docs"
#: A ``::: asyncx.Name`` line: mkdocstrings renders that object's docstring there.
DIRECTIVE = re.compile(r"^:::\s+(asyncx(?:\.\w+)+)\s*$", re.MULTILINE)


def _public(package: ModuleType) -> Iterator[tuple[str, object]]:
    for name in package.__all__:
        yield f"{package.__name__}.{name}", getattr(package, name)


def _own_doc(cls: type) -> str:
    """The class's own docstring: not one inherited, nor the one NamedTuple writes (``Name(a, b)``)."""
    doc = cls.__dict__.get("__doc__") or ""
    if doc.startswith(f"{cls.__name__}("):
        return ""
    return doc.strip()


def _members(cls: type) -> Iterator[tuple[str, object]]:
    """The public functions and properties a class defines itself."""
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(value, (staticmethod, classmethod)):
            yield name, value.__func__
        elif isinstance(value, property):
            yield name, value.fget
        elif inspect.isfunction(value):
            yield name, value


def _defining_module(package: ModuleType, name: str) -> ModuleType:
    """The private module a package imports ``name`` from (``from ._server import DEFAULT_LIMITS``)."""
    tree = ast.parse(inspect.getsource(package))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and any(alias.name == name for alias in node.names):
            return importlib.import_module("." * node.level + (node.module or ""), package.__name__)
    return package


def _data_documented(package: ModuleType, name: str) -> bool:
    """A constant (not a class or function) has no ``__doc__`` of its own: it is documented where it is
    assigned, by ``#:`` comments above it (the project's habit, which the docs build reads) or a string
    after it. A module that exists for one name (``_version.py``) may say it in its own docstring."""
    module = _defining_module(package, name)
    source = inspect.getsource(module)
    lines = source.splitlines()
    body = ast.parse(source).body
    for i, node in enumerate(body):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        if not any(isinstance(t, ast.Name) and t.id == name for t in targets):
            continue
        comment = lines[node.lineno - 2].strip() if node.lineno > 1 else ""
        after = body[i + 1] if i + 1 < len(body) else None
        string_after = (
            isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        )
        if (comment.startswith("#:") and len(comment) > 2) or string_after:
            return True
    return f"``{package.__name__}.{name}``" in (module.__doc__ or "")


PUBLIC = [pair for package in PACKAGES for pair in _public(package)]


# Ids by name only: an object's repr holds its address, which differs between xdist workers.
@pytest.mark.parametrize(("qualname", "obj"), PUBLIC, ids=[qualname for qualname, _ in PUBLIC])
def test_every_public_name_has_a_docstring_of_its_own(qualname: str, obj: object) -> None:
    """Classes have their own docstring (not ``object``'s or one attrs or NamedTuple made up), and so do
    their public methods and properties; functions have one; constants a ``#:`` comment."""
    package_name, _, name = qualname.rpartition(".")
    if inspect.isclass(obj):
        assert _own_doc(obj), f"{qualname} has no docstring of its own"
        undocumented = [m for m, f in _members(obj) if not (getattr(f, "__doc__", None) or "").strip()]
        assert not undocumented, f"{qualname}: undocumented {', '.join(undocumented)}"
    elif callable(obj):
        assert (obj.__doc__ or "").strip(), f"{qualname} has no docstring"
    else:
        package = importlib.import_module(package_name)
        assert _data_documented(package, name), f"{qualname} is not documented where it is assigned"


def _directives() -> set[str]:
    if not DOCS.is_dir():
        pytest.skip("docs/ is not beside tests/ (this run uses a copy of the tests outside the checkout)")
    return {m for page in DOCS.rglob("*.md") for m in DIRECTIVE.findall(page.read_text(encoding="utf-8"))}


def test_the_api_reference_renders_every_name_of_asyncx() -> None:
    """Each name of ``asyncx.__all__`` (the version string aside) has a ``::: asyncx.Name`` line."""
    listed = _directives()
    missing = [n for n in asyncx.__all__ if n != "__version__" and f"asyncx.{n}" not in listed]
    assert not missing, f"not in the API reference under docs/: {', '.join(missing)}"


def test_the_api_reference_renders_every_name_of_testing_and_bulk() -> None:
    listed = _directives()
    for package in (asyncx.testing, asyncx.bulk):
        missing = [n for n in package.__all__ if f"{package.__name__}.{n}" not in listed]
        assert not missing, f"not in the API reference under docs/: {', '.join(missing)}"


def _resolve(path: str) -> object:
    """The object a dotted path names, importing submodules on the way; None if there is none."""
    parts = path.split(".")
    obj: object = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], 2):
        if hasattr(obj, part):
            obj = getattr(obj, part)
            continue
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            return None
    return obj


def test_every_reference_directive_names_something_that_exists() -> None:
    """A renamed or removed name fails here, not only in the docs build."""
    gone = [path for path in sorted(_directives()) if _resolve(path) is None]
    assert not gone, f"docs/ names what does not exist: {', '.join(gone)}"
