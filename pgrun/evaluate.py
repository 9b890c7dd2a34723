"""``pgrun-eval RUN_DIR``: measure a trained policy on complete episodes.

The returns logged during training mix many policies (the one being learned
changes every iteration) and always sample actions. Evaluation instead takes
one saved checkpoint, normalises observations with the statistics it was
trained under, and plays whole episodes, greedily with ``--deterministic``.
``--backend gymnasium`` plays them in Gymnasium's own simulator even when the
policy was trained on a JAX port, which checks that the port did not teach it
to exploit a difference; ``--video`` records one episode to look at.

Results go to ``RUN_DIR/eval.json``. Bad input (no such run, no such
checkpoint, an impossible option) prints one line and exits 2.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence

import numpy as np

from pgrun.episodes import MAX_EPISODE_STEPS, make_acting, make_jax_episode

EXIT_BAD_INPUT = 2
CHECKPOINTS = ("final", "latest")
BACKENDS = ("jax", "gymnasium")
# What goes to TensorBoard: a full episode at full size would bloat the event file.
TENSORBOARD_MAX_FRAMES = 200
TENSORBOARD_GRID_FRAMES = 8


class EvalError(ValueError):
    """Bad input to the evaluation: one line, exit code 2."""


@dataclass
class Episodes:
    returns: list[float]
    lengths: list[int]


@dataclass
class Video:
    path: Path  # the GIF or MP4 file
    frames: int
    episode_return: float
    tensorboard_dir: Path
    tensorboard_as: str  # "video" (add_video) or "image grid" (add_images)


# --------------------------------------------------------------------------
# Checking the run directory (before anything heavy is imported)
# --------------------------------------------------------------------------


def checkpoint_file(run_dir: Path, name: str) -> Path:
    from pgrun import checkpoint

    return run_dir / checkpoint.DIRECTORY / f"{name}.msgpack"


def check_run(run_dir: Path, checkpoint: str, seed_index: int, backend: str | None) -> tuple[Any, str]:
    """Validate the request against the run's files and saved config.

    Returns ``(cfg, backend)`` with the backend resolved, or raises
    :class:`EvalError` naming the problem and the fix.
    """
    from omegaconf import OmegaConf

    from pgrun.envs import has_jax_port

    if not run_dir.is_dir():
        raise EvalError(f"{run_dir}: no such directory: pass the directory a pgrun run wrote")
    config_path = run_dir / ".hydra" / "config.yaml"
    if not config_path.exists():
        raise EvalError(f"{run_dir} is not a pgrun run directory (no .hydra/config.yaml): "
                        f"pass the directory a pgrun run wrote")
    path = checkpoint_file(run_dir, checkpoint)
    if not path.exists():
        others = [name for name in CHECKPOINTS if name != checkpoint and checkpoint_file(run_dir, name).exists()]
        fix = (f"pass --checkpoint {others[0]} to evaluate that one instead" if others
               else "the run saved no checkpoint; train it again")
        raise EvalError(f"{run_dir} has no {checkpoint} checkpoint ({path} is missing): {fix}")
    cfg = OmegaConf.load(config_path)
    from pgrun.config import sweep_points

    num_seeds = int(cfg.num_seeds) * len(sweep_points(cfg))  # a vectorised sweep: every point's seeds, point-major
    if not 0 <= seed_index < num_seeds:
        raise EvalError(f"--seed-index {seed_index} is out of range: the run trained {num_seeds} seed(s), "
                        f"so pass 0..{num_seeds - 1}")
    env_id = str(cfg.env.id)
    if backend is None:
        backend = "jax" if has_jax_port(env_id) else "gymnasium"
    elif backend == "jax" and not has_jax_port(env_id):
        raise EvalError(f"{env_id} has no JAX port: use --backend gymnasium")
    return cfg, backend


# --------------------------------------------------------------------------
# Acting
# --------------------------------------------------------------------------


def make_host_actor(setup: Any, params: Any, obs_stats: Any,
                    deterministic: bool) -> Callable[[np.ndarray, Any], tuple[Any, Any]]:
    """``actor(obs, key) -> (env_action, key)`` for one flat observation, jitted."""
    import jax

    acting = make_acting(setup.policy, setup.normalize, deterministic)

    @jax.jit
    def actor(obs, key):
        key, k_act = jax.random.split(key)
        return acting(params, obs_stats, obs, k_act), key

    return actor


def to_gym_action(action: Any, space: Any) -> Any:
    """A policy's environment action as Gymnasium wants it (int for Discrete)."""
    import gymnasium

    action = np.asarray(action)
    if isinstance(space, gymnasium.spaces.Discrete):
        return int(action)
    return action.astype(space.dtype).reshape(space.shape)


def check_spaces(setup: Any, env: Any) -> None:
    """The policy must fit the Gymnasium environment it is about to play."""
    import gymnasium

    from pgrun.envs.core import Discrete
    from pgrun.envs.gym_bridge import UnsupportedSpaceError, observation_space_of

    try:
        obs_dim = int(np.prod(observation_space_of(env.observation_space).shape))
    except UnsupportedSpaceError as err:
        raise EvalError(f"{env.spec.id if env.spec else env}: {err}") from None
    if obs_dim != setup.policy.obs_dim:
        raise EvalError(f"Gymnasium's {env.spec.id} observes {obs_dim} numbers but the policy expects "
                        f"{setup.policy.obs_dim}: evaluate with --backend jax")
    discrete = isinstance(setup.policy.action_space, Discrete)
    if discrete != isinstance(env.action_space, gymnasium.spaces.Discrete):
        raise EvalError(f"Gymnasium's {env.spec.id} action space {env.action_space} does not match the "
                        f"policy's: evaluate with --backend jax")


def play_gym_episode(env: Any, actor: Callable, key: Any, seed: int | None,
                     frames: list[np.ndarray] | None = None) -> tuple[float, int, Any]:
    """One episode on a Gymnasium env: ``(return, length, key)``; appends rendered frames if asked."""
    from pgrun.envs.gym_bridge import encode_observations

    obs, _ = env.reset(seed=seed)
    if frames is not None:
        frames.append(np.asarray(env.render()))
    total, length = 0.0, 0
    while length < MAX_EPISODE_STEPS:
        flat = encode_observations(env.observation_space, np.asarray(obs)[None])[0]
        action, key = actor(flat, key)
        obs, reward, terminated, truncated, _ = env.step(to_gym_action(action, env.action_space))
        total += float(reward)
        length += 1
        if frames is not None:
            frames.append(np.asarray(env.render()))
        if terminated or truncated:
            break
    return total, length, key


def run_gymnasium(setup: Any, params: Any, obs_stats: Any, env_id: str, episodes: int,
                  deterministic: bool, seed: int) -> Episodes:
    """Episodes in Gymnasium's own environment (``gymnasium.make``), one after another."""
    import gymnasium
    import jax

    env = gymnasium.make(env_id)
    try:
        check_spaces(setup, env)
        actor = make_host_actor(setup, params, obs_stats, deterministic)
        key = jax.random.PRNGKey(seed)
        returns, lengths = [], []
        for i in range(episodes):
            total, length, key = play_gym_episode(env, actor, key, seed if i == 0 else None)
            returns.append(total)
            lengths.append(length)
    finally:
        env.close()
    return Episodes(returns, lengths)


def run_jax(setup: Any, params: Any, obs_stats: Any, env_id: str, episodes: int,
            deterministic: bool, seed: int) -> Episodes:
    """All episodes at once on the JAX port: :func:`make_jax_episode` vmapped over episodes."""
    import jax

    from pgrun.envs.classic import make_jax_env

    episode = make_jax_episode(make_jax_env(env_id), setup.policy, setup.normalize, deterministic)
    keys = jax.random.split(jax.random.PRNGKey(seed), episodes)
    play = jax.jit(jax.vmap(episode, in_axes=(None, None, 0)))
    returns, lengths = jax.device_get(play(params, obs_stats, keys))
    return Episodes([float(r) for r in returns], [int(n) for n in lengths])


# --------------------------------------------------------------------------
# Video
# --------------------------------------------------------------------------


def write_animation(frames: list[np.ndarray], directory: Path, fps: float) -> Path:
    """``eval.mp4`` when imageio-ffmpeg is available, else ``eval.gif`` (Pillow, no ffmpeg needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    if importlib.util.find_spec("imageio_ffmpeg") is not None:
        import imageio.v2 as imageio

        # H.264 in yuv420p needs even sides: pad by one pixel where necessary.
        h, w = frames[0].shape[:2]
        pad = ((0, h % 2), (0, w % 2), (0, 0))
        path = directory / "eval.mp4"
        imageio.mimwrite(path, [np.pad(f, pad, mode="edge") for f in frames], fps=fps, macro_block_size=1)
        return path
    from PIL import Image

    path = directory / "eval.gif"
    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=max(20, round(1000 / fps)), loop=0)
    return path


def log_video(frames: list[np.ndarray], log_dir: Path, fps: float) -> str:
    """Log the episode to TensorBoard under ``log_dir`` with tag ``eval/video``.

    tensorboardX encodes videos with moviepy; without it, a grid of a few
    evenly spaced frames is logged as an image instead. Returns which was done.
    """
    from tensorboardX import SummaryWriter

    stack = np.stack(frames).astype(np.uint8)  # [T, H, W, C]
    writer = SummaryWriter(str(log_dir))
    try:
        if importlib.util.find_spec("moviepy") is not None:
            stride = math.ceil(len(stack) / TENSORBOARD_MAX_FRAMES)
            clip = stack[::stride].transpose(0, 3, 1, 2)[None]  # [1, T, C, H, W]
            writer.add_video("eval/video", clip, global_step=0, fps=max(1, round(fps / stride)))
            return "video"
        picks = np.linspace(0, len(stack) - 1, min(TENSORBOARD_GRID_FRAMES, len(stack))).round().astype(int)
        writer.add_images("eval/video", stack[picks], global_step=0, dataformats="NHWC")
        return "image grid"
    finally:
        writer.close()


def record_video(setup: Any, params: Any, obs_stats: Any, env_id: str, run_dir: Path,
                 deterministic: bool, seed: int) -> Video:
    """One episode in Gymnasium with ``render_mode="rgb_array"``, whatever the backend."""
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    import gymnasium
    import jax

    try:
        env = gymnasium.make(env_id, render_mode="rgb_array")
    except gymnasium.error.DependencyNotInstalled as err:
        first = next((line for line in str(err).splitlines() if line.strip()), str(err))
        raise EvalError(f"--video cannot render {env_id} ({first}): install it, or drop --video") from None
    try:
        check_spaces(setup, env)
        actor = make_host_actor(setup, params, obs_stats, deterministic)
        frames: list[np.ndarray] = []
        total, _, _ = play_gym_episode(env, actor, jax.random.PRNGKey(seed), seed, frames)
        fps = float(env.metadata.get("render_fps") or 30)
    finally:
        env.close()
    frames = [f for f in frames if f is not None and f.ndim == 3]
    if not frames:
        raise EvalError(f"{env_id} rendered no frames in rgb_array mode: drop --video")
    path = write_animation(frames, run_dir / "videos", fps)
    tensorboard_dir = run_dir / "eval"
    tensorboard_as = log_video(frames, tensorboard_dir, fps)
    return Video(path, len(frames), total, tensorboard_dir, tensorboard_as)


# --------------------------------------------------------------------------
# The whole evaluation
# --------------------------------------------------------------------------


def evaluate(run_dir: Path, episodes: int = 10, backend: str | None = None, deterministic: bool = False,
             seed: int = 0, checkpoint: str = "final", seed_index: int = 0,
             video: bool = False) -> dict[str, Any]:
    """Evaluate one seed's policy from a run's checkpoint and write ``run_dir/eval.json``.

    ``backend`` None picks the JAX port when the environment has one. Returns
    what was written (plus a ``video`` entry when one was recorded). Raises
    :class:`EvalError` for bad input.
    """
    import jax

    from pgrun.config import ConfigError
    from pgrun.run_folder import RunFolder
    from pgrun.trained import load_trained
    from pgrun.run_folder import write_json_atomic

    run_dir = Path(run_dir)
    if checkpoint not in CHECKPOINTS:
        raise EvalError(f"--checkpoint must be one of {', '.join(CHECKPOINTS)} (got {checkpoint!r})")
    if backend is not None and backend not in BACKENDS:
        raise EvalError(f"--backend must be one of {', '.join(BACKENDS)} (got {backend!r})")
    if episodes < 1:
        raise EvalError(f"--episodes must be at least 1 (got {episodes})")
    cfg, backend = check_run(run_dir, checkpoint, seed_index, backend)
    path = checkpoint_file(run_dir, checkpoint)
    try:
        setup = load_trained(RunFolder(run_dir), checkpoint)
    except ConfigError as err:
        raise EvalError(str(err)) from None
    except Exception as err:  # a corrupt file, or one from an incompatible version
        detail = next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
        raise EvalError(f"cannot load {path} with the run's config ({detail}): "
                        f"try --checkpoint {'latest' if checkpoint == 'final' else 'final'}, "
                        f"or train the run again") from None
    params, obs_stats = setup.member(seed_index)
    env_id = str(cfg.env.id)

    play = run_jax if backend == "jax" else run_gymnasium
    result = play(setup, params, obs_stats, env_id, episodes, deterministic, seed)
    report: dict[str, Any] = {
        "env": env_id,
        "backend": backend,
        "checkpoint": checkpoint,
        "seed_index": seed_index,
        "deterministic": deterministic,
        "episodes": episodes,
        "mean_return": float(np.mean(result.returns)),
        "std_return": float(np.std(result.returns)),
        "returns": result.returns,
        "lengths": result.lengths,
        "seed": seed,
        "trained_seed": int(setup.seeds[seed_index]),
        **({"sweep_point": setup.members[seed_index].point} if setup.members[seed_index].point else {}),
    }
    if video:
        recorded = record_video(setup, params, obs_stats, env_id, run_dir, deterministic, seed)
        report["video"] = {"path": str(recorded.path.relative_to(run_dir)), "frames": recorded.frames,
                           "return": recorded.episode_return,
                           "tensorboard_dir": str(recorded.tensorboard_dir.relative_to(run_dir)),
                           "tensorboard_as": recorded.tensorboard_as}
    write_json_atomic(run_dir / "eval.json", report)
    return report


def summary_line(report: dict[str, Any]) -> str:
    """``eval ENV (BACKEND, N episodes, MODE): return MEAN ± STD, length MEAN``."""
    mode = "deterministic" if report["deterministic"] else "sampled"
    seed = f", seed index {report['seed_index']}" if report["seed_index"] else ""
    episodes = f"{report['episodes']} episode{'s' if report['episodes'] != 1 else ''}"
    return (f"eval {report['env']} ({report['backend']}, {episodes}, {mode}{seed}): "
            f"return {report['mean_return']:.1f} ± {report['std_return']:.1f}, "
            f"length {float(np.mean(report['lengths'])):.1f}")


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def _fail(message: str) -> NoReturn:
    print(f"pgrun-eval: error: {message}", file=sys.stderr, flush=True)
    sys.exit(EXIT_BAD_INPUT)


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line in the pgrun style."""

    def error(self, message: str) -> NoReturn:
        _fail(f"{message} (see pgrun-eval --help)")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = _Parser(prog="pgrun-eval", description="Evaluate a pgrun run's policy on complete episodes "
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


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``pgrun-eval``."""
    args = parse_args(argv)
    if args.episodes < 1:
        _fail(f"--episodes must be at least 1 (got {args.episodes})")
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)  # backend probing is noise
    try:
        report = evaluate(args.run_dir, episodes=args.episodes, backend=args.backend,
                          deterministic=args.deterministic, seed=args.seed, checkpoint=args.checkpoint,
                          seed_index=args.seed_index, video=args.video)
    except EvalError as err:
        _fail(str(err))
    except KeyboardInterrupt:
        print("pgrun-eval: error: interrupted", file=sys.stderr, flush=True)
        sys.exit(130)
    print(summary_line(report), flush=True)
    if "video" in report:
        video = report["video"]
        kind = "MP4" if video["path"].endswith(".mp4") else "GIF"
        how = ("as a video" if video["tensorboard_as"] == "video"
               else "as a grid of frames (moviepy is not installed, so no video)")
        print(f"video: {args.run_dir / video['path']} ({kind}, {video['frames']} frames, "
              f"return {video['return']:.1f}); TensorBoard: {args.run_dir / video['tensorboard_dir']} "
              f"(tag eval/video, {how})", flush=True)


if __name__ == "__main__":
    main()
