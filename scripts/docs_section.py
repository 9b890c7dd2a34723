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
