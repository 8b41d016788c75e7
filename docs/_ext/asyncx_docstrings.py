"""A Griffe extension for the docs build: asyncx's docstring habits, rendered as Markdown.

asyncx's docstrings are written for ``help()`` and for reading in the source, so:

- a code block is marked the reStructuredText way, a paragraph ending in ``::`` and an indented block
  after it. Markdown would show the ``::`` and lose the highlighting, so each such block becomes a
  fenced one, and the ``::`` a ``:`` (or nothing, on a line of its own);
- attributes are documented with ``#:`` comments above them, as Sphinx reads them. Griffe reads only a
  string after an assignment, so the comments become the attribute's docstring.

The source stays as it is; only what the docs site shows changes.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import griffe


def _language(block: list[str]) -> str:
    """What to highlight a block as: a drawn tree, JSON lines or prose as text, else Python."""
    text = "\n".join(block)
    if "├──" in text or "└──" in text:
        return "text"
    if all(line.lstrip().startswith("{") for line in block if line.strip()):
        return "json"
    if not any(c in text for c in "=()"):
        return "text"
    return "python"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def fence_literal_blocks(text: str) -> str:
    """``text`` with every ``::`` literal block fenced."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.rstrip().endswith("::"):
            out.append(line)
            i += 1
            continue
        base = _indent(line)
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        block: list[str] = []
        while j < len(lines) and (not lines[j].strip() or _indent(lines[j]) > base):
            block.append(lines[j])
            j += 1
        while block and not block[-1].strip():
            block.pop()
        if not block:  # a "::" with nothing indented after it: leave the line as written
            out.append(line)
            i += 1
            continue
        stripped = line.rstrip()
        if stripped.strip() != "::":
            out.append(stripped[:-1])  # "Example::" reads "Example:"
        margin = min(_indent(b) for b in block if b.strip())
        out += ["", " " * base + f"```{_language(block)}"]
        out += [" " * base + b[margin:] if b.strip() else "" for b in block]
        out += [" " * base + "```", ""]
        i = j
    return "\n".join(out)


@functools.cache
def _source(path: Path) -> tuple[str, ...]:
    return tuple(path.read_text(encoding="utf-8").splitlines())


def comment_above(lines: tuple[str, ...], lineno: int) -> str | None:
    """The ``#:`` comment lines just above line ``lineno`` (1-based), joined, or None."""
    found: list[str] = []
    i = lineno - 2
    while i >= 0 and lines[i].lstrip().startswith("#:"):
        found.append(lines[i].lstrip()[2:].strip())
        i -= 1
    return " ".join(reversed(found)) or None


class AsyncxDocstrings(griffe.Extension):
    """Fence the ``::`` literal blocks of every docstring, and read ``#:`` comments as docstrings."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        docstring = obj.docstring
        if docstring is not None and "::" in docstring.value:
            docstring.value = fence_literal_blocks(docstring.value)

    def on_attribute_instance(self, *, attr: griffe.Attribute, **kwargs: Any) -> None:
        if attr.docstring is not None or attr.lineno is None or not isinstance(attr.filepath, Path):
            return
        text = comment_above(_source(attr.filepath), attr.lineno)
        if text is not None:
            attr.docstring = griffe.Docstring(text, lineno=attr.lineno, parent=attr)
