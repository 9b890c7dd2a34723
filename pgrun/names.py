"""Suggestions for mistyped names, shared by every error that names a choice."""

from __future__ import annotations

import difflib


def close_matches(name: str, options: list[str]) -> str:
    """' (did you mean X, Y?)' or '' — appended to unknown-name errors."""
    found = difflib.get_close_matches(name, options, n=3, cutoff=0.5)
    if not found:
        lowered = {o.lower(): o for o in options}
        found = [lowered[m] for m in difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.5)]
    return f" (did you mean {', '.join(found)}?)" if found else ""
