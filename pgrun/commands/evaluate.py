"""``pgrun-eval RUN_DIR``: the command line of :mod:`pgrun.evaluate`.

Parses the options, runs the evaluation, prints its one-line summary (and
where the video went), and turns :class:`~pgrun.evaluate.EvalError` into one
line on stderr with exit code 2.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pgrun.commands import Parser, quiet_backend_probing
from pgrun.commands import fail
from pgrun.errors import EXIT_INTERRUPTED, ConfigError
from pgrun.evaluate import (BACKENDS, CHECKPOINTS, TENSORBOARD_STRIP_FRAMES, TENSORBOARD_VIDEO, evaluate,
                            summary_line)

PROG = "pgrun-eval"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """pgrun-eval's arguments; a usage error exits 2 with one line."""
    parser = Parser(prog=PROG, description="Evaluate a pgrun run's policy on complete episodes "
                                           "and write RUN_DIR/eval.json.")
    parser.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="a directory written by pgrun")
    parser.add_argument("--episodes", type=int, default=10, help="complete episodes to play (default 10)")
    parser.add_argument("--backend", choices=BACKENDS, default=None,
                        help="jax: the pure-JAX port (default when there is one); "
                             "gymnasium: Gymnasium's own environment")
    parser.add_argument("--deterministic", action="store_true", help="act with the mode instead of sampling")
    parser.add_argument("--video", action="store_true",
                        help="record one episode (via Gymnasium) to RUN_DIR/videos/ and TensorBoard in RUN_DIR/eval/")
    parser.add_argument("--seed", type=int, default=0, help="seed for resets and action sampling (default 0)")
    parser.add_argument("--seed-index", type=int, default=0,
                        help="which of the run's seeds to evaluate (default 0, the first; in a vectorised "
                             "sweep the members are numbered point by point, seeds within each point)")
    parser.add_argument("--checkpoint", choices=CHECKPOINTS, default="final",
                        help="checkpoints/<name>.msgpack to load (default final)")
    return parser.parse_args(argv)


def video_line(run_dir: Path, video: dict[str, Any]) -> str:
    """Where the recorded episode went: the animation file and the TensorBoard folder."""
    kind = "MP4" if video["path"].endswith(".mp4") else "GIF"
    how = ("as a video" if video["tensorboard_as"] == TENSORBOARD_VIDEO
           else f"not a video: one still image of {min(TENSORBOARD_STRIP_FRAMES, video['frames'])} frames "
                f"side by side, as {video.get('tensorboard_note', 'no video could be encoded')}")
    return (f"video: {run_dir / video['path']} ({kind}, {video['frames']} frames, "
            f"return {video['return']:.1f}); TensorBoard: {run_dir / video['tensorboard_dir']} "
            f"(tag eval/video, {how})")


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``pgrun-eval``."""
    args = parse_args(argv)
    quiet_backend_probing()
    try:
        report = evaluate(args.run_dir, episodes=args.episodes, backend=args.backend,
                          deterministic=args.deterministic, seed=args.seed, checkpoint=args.checkpoint,
                          seed_index=args.seed_index, video=args.video)
    except ConfigError as err:
        fail(PROG, str(err))
    except KeyboardInterrupt:
        fail(PROG, "interrupted", EXIT_INTERRUPTED)
    print(summary_line(report), flush=True)
    if "video" in report:
        print(video_line(args.run_dir, report["video"]), flush=True)


if __name__ == "__main__":
    main()
