"""Write README's algorithm table from the registry: name, summary, reference and own keys.

The table lists every module under ``pgrun/algos/`` that registers an
algorithm, so adding one updates the README by running this script (a test
checks that the README matches the registry).

    python scripts/write_algorithm_table.py --write
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from docs_section import write_block
from pgrun.algos import registry
from pgrun.types import AlgoConfig

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = "algorithm-table"


def own_keys(config: type) -> list[str]:
    """The keys an algorithm adds to the ones every algorithm shares."""
    shared = {f.name for f in fields(AlgoConfig)}
    return [f.name for f in fields(config) if f.name not in shared]


def algorithm_table() -> str:
    lines = ["| `algo=` | what it does | reference | its own keys (`algo.*`) |", "|---|---|---|---|"]
    for name, spec in registry().items():
        keys = ", ".join(f"`{key}`" for key in own_keys(spec.config))
        summary = spec.summary.replace("|", "\\|")  # a literal bar inside a table cell
        lines.append(f"| `{name}` | {summary} | {spec.paper} | {keys} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"replace the {BLOCK} block of README.md")
    args = parser.parse_args()
    text = algorithm_table()
    print(text)
    if args.write:
        write_block(BLOCK, text, "", doc_path=README)


if __name__ == "__main__":
    main()
