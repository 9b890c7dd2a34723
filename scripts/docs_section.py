"""Rewrite one generated block of ``docs/benchmarks.md`` and leave the rest alone.

Each benchmark script owns a block between two HTML comments
(``<!-- name:start -->`` ... ``<!-- name:end -->``); re-running it replaces
that block, and the first run appends it under a heading of its choosing.
"""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def write_block(name: str, text: str, heading: str, doc_path: Path = DOC) -> None:
    """Put ``text`` between ``name``'s markers, appending ``heading`` and the block if absent."""
    start, end = markers(name)
    doc = doc_path.read_text() if doc_path.exists() else "# Benchmarks\n"
    block = f"{start}\n{text.strip(chr(10))}\n{end}"
    if start in doc:
        doc = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, doc, flags=re.S)
    else:
        doc = doc.rstrip() + (f"\n\n{heading}" if heading else "") + f"\n\n{block}\n"
    doc_path.write_text(doc)


def add_output_options(parser, block: str) -> None:
    """``--write`` (rewrite ``block`` of the doc) and ``--doc`` (which doc), as every benchmark takes them."""
    parser.add_argument("--write", action="store_true", help=f"replace the {block} block of the doc")
    parser.add_argument("--doc", type=Path, default=DOC, help="the document --write rewrites (default: %(default)s)")


def publish(text: str, block: str, heading: str, write: bool, doc_path: Path = DOC) -> None:
    """Print a benchmark's text and, with ``write``, put it into its block of the doc."""
    print(text)
    if write:
        write_block(block, text, heading, doc_path=doc_path)
        print(f"wrote the {block} block of {doc_path}")


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
