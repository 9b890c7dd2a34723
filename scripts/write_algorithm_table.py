"""Write README's algorithm tables from the registry: name, summary, reference and own keys,
and the TensorBoard tags each algorithm logs.

The tables list every module under ``pgrun/algos/`` that registers an
algorithm, so adding one updates the README by running this script (tests
check that the README matches the registry and what each algorithm logs).
The tag table trains every algorithm for a few iterations to read its tags.

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
TAGS_BLOCK = "algorithm-tags"
# Tags every run logs whatever its algorithm; the tag table lists the others.
SHARED_PREFIXES = ("charts/", "eval/")


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


def logged_tags(name: str) -> list[str]:
    """The algorithm-specific tags a short CartPole run of ``name`` with its defaults logs."""
    import tempfile

    from hydra import compose, initialize_config_dir
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from pgrun.config import register_configs
    from pgrun.paths import conf_dir
    from pgrun.run import run_training

    register_configs()
    with initialize_config_dir(str(conf_dir()), version_base=None):
        cfg = compose("config", overrides=[f"algo={name}", "env=CartPole-v1", "num_envs=2", "algo.num_steps=64",
                                           "total_timesteps=512", "log_interval=2", "quiet=true", "eval.every=0"])
    with tempfile.TemporaryDirectory() as run_dir:
        run_training(cfg, Path(run_dir))
        events = EventAccumulator(run_dir)
        events.Reload()
        return sorted(tag for tag in events.Tags()["scalars"] if not tag.startswith(SHARED_PREFIXES))


def tag_table() -> str:
    lines = ["| `algo=` | its own TensorBoard tags |", "|---|---|"]
    for name in registry():
        lines.append(f"| `{name}` | {', '.join(f'`{tag}`' for tag in logged_tags(name))} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"replace the {BLOCK} block of README.md")
    args = parser.parse_args()
    text, tags = algorithm_table(), tag_table()
    print(text + "\n\n" + tags)
    if args.write:
        write_block(BLOCK, text, "", doc_path=README)
        write_block(TAGS_BLOCK, tags, "", doc_path=README)


if __name__ == "__main__":
    main()
