"""Evaluation: measure a trained policy on complete episodes (the library behind ``pgrun-eval``).

The returns logged during training mix many policies (the one being learned
changes every iteration) and always sample actions. Evaluation instead takes
one saved checkpoint, normalises observations with the statistics it was
trained under, and plays whole episodes, greedily with ``deterministic``.
The ``gymnasium`` backend plays them in Gymnasium's own simulator even when
the policy was trained on a JAX port, which checks that the port did not
teach it to exploit a difference; ``video`` records one episode to look at.

:func:`evaluate` writes ``RUN_DIR/eval.json`` and returns what it wrote. Bad
input (no such run, no such checkpoint, an impossible option) raises
:class:`EvalError`, whose message names the ``pgrun-eval`` option to change;
nothing here prints or exits (:mod:`pgrun.commands.evaluate` does).
"""

from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pgrun.episodes import MAX_EPISODE_STEPS, make_jax_episode, make_keyed_acting
from pgrun.errors import ConfigError, first_line

BACKENDS = ("jax", "gymnasium")
# pgrun.run_folder.CHECKPOINT_NAMES, spelled out so that parsing pgrun-eval's options needs no JAX
# (pgrun.run_folder imports the config schemas, which import every algorithm).
CHECKPOINTS = ("final", "latest")
# What an evaluation writes into the run folder, beside what training wrote.
EVAL_JSON = "eval.json"
VIDEO_DIR = "videos"
TENSORBOARD_DIR = "eval"
# What goes to TensorBoard: a full episode at full size would bloat the event file.
TENSORBOARD_MAX_FRAMES = 200
TENSORBOARD_MAX_SIDE = 320  # pixels; frames are shrunk by a whole factor to fit
TENSORBOARD_STRIP_FRAMES = 8  # the still strip logged when no video can be encoded
TENSORBOARD_VIDEO = "video"
TENSORBOARD_STRIP = "frame strip"
VIDEO_EXTRA = "pip install 'pgrun[video]'"


class EvalError(ConfigError):
    """Bad input to the evaluation: one line, exit code 2."""


@dataclass
class Episodes:
    """The return and length of every evaluated episode, in order."""

    returns: list[float]
    lengths: list[int]


@dataclass
class Video:
    """One recorded episode: where its file is, and how TensorBoard got it."""

    path: Path  # the GIF or MP4 file
    frames: int
    episode_return: float
    tensorboard_dir: Path
    tensorboard_as: str  # TENSORBOARD_VIDEO (an animated GIF) or TENSORBOARD_STRIP (one still image)
    tensorboard_note: str = ""  # why there is no video, when there is none


# --------------------------------------------------------------------------
# Checking the request
# --------------------------------------------------------------------------


def check_options(episodes: int, backend: str | None, checkpoint: str) -> None:
    """The options that need no run folder to be judged."""
    if checkpoint not in CHECKPOINTS:
        raise EvalError(f"--checkpoint must be one of {', '.join(CHECKPOINTS)} (got {checkpoint!r})")
    if backend is not None and backend not in BACKENDS:
        raise EvalError(f"--backend must be one of {', '.join(BACKENDS)} (got {backend!r})")
    if episodes < 1:
        raise EvalError(f"--episodes must be at least 1 (got {episodes})")


def choose_backend(env_id: str, backend: str | None) -> str:
    """The backend to play on: ``None`` lets :func:`pgrun.envs.resolve_backend` pick (the JAX port when
    there is one); a JAX port that does not exist is refused in ``pgrun-eval``'s words."""
    from pgrun.envs import has_jax_port, resolve_backend

    if backend == "jax" and not has_jax_port(env_id):
        raise EvalError(f"{env_id} has no JAX port: use --backend gymnasium")
    try:
        return resolve_backend(env_id, backend or "auto")
    except ConfigError as err:
        raise EvalError(str(err)) from None


def check_run(run_dir: Path, checkpoint: str, seed_index: int, backend: str | None) -> tuple[Any, str]:
    """Validate the request against the run's files and saved config.

    Returns ``(cfg, backend)`` with the backend resolved, or raises
    :class:`EvalError` naming the problem and the fix.
    """
    from pgrun.config import sweep_points
    from pgrun.run_folder import CONFIG, RunFolder

    folder = RunFolder(Path(run_dir))
    if not folder.path.is_dir():
        raise EvalError(f"{run_dir}: no such directory: pass the directory a pgrun run wrote")
    if not folder.is_run():
        raise EvalError(f"{run_dir} is not a pgrun run directory (no {CONFIG.as_posix()}): "
                        f"pass the directory a pgrun run wrote")
    path = folder.checkpoint(checkpoint)
    if not path.exists():
        others = [name for name in CHECKPOINTS if name != checkpoint and folder.checkpoint(name).exists()]
        fix = (f"pass --checkpoint {others[0]} to evaluate that one instead" if others
               else "the run saved no checkpoint; train it again")
        raise EvalError(f"{run_dir} has no {checkpoint} checkpoint ({path} is missing): {fix}")
    cfg = folder.load_config()
    num_seeds = int(cfg.num_seeds) * len(sweep_points(cfg))  # a vectorised sweep: every point's seeds, point-major
    if not 0 <= seed_index < num_seeds:
        raise EvalError(f"--seed-index {seed_index} is out of range: the run trained {num_seeds} seed(s), "
                        f"so pass 0..{num_seeds - 1}")
    return cfg, choose_backend(str(cfg.env.id), backend)


def load_policy(run_dir: Path, checkpoint: str) -> Any:
    """The run as its checkpoint left it (:func:`pgrun.trained.load_trained`), errors as :class:`EvalError`."""
    from pgrun.run_folder import RunFolder
    from pgrun.trained import load_trained

    folder = RunFolder(Path(run_dir))
    try:
        return load_trained(folder, checkpoint)
    except ConfigError as err:
        raise EvalError(str(err)) from None
    except Exception as err:  # a corrupt file, or one from an incompatible version
        detail = first_line(err) or type(err).__name__
        raise EvalError(f"cannot load {folder.checkpoint(checkpoint)} with the run's config ({detail}): "
                        f"try --checkpoint {'latest' if checkpoint == 'final' else 'final'}, "
                        f"or train the run again") from None


# --------------------------------------------------------------------------
# Acting
# --------------------------------------------------------------------------


def make_host_actor(setup: Any, params: Any, obs_stats: Any,
                    deterministic: bool) -> Callable[[np.ndarray, Any], tuple[Any, Any]]:
    """``actor(obs, key) -> (env_action, key)`` for one flat observation, jitted: the acting of
    :mod:`pgrun.episodes`, bound to one member's parameters."""
    import jax

    act = jax.jit(make_keyed_acting(setup.policy, setup.normalize, deterministic))
    return lambda obs, key: act(params, obs_stats, obs, key)


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
            deterministic: bool, seed: int, backend: str = "jax") -> Episodes:
    """All episodes at once on a JAX environment (``backend`` runs inside the compiled loop):
    :func:`make_jax_episode` vmapped over episodes."""
    import jax

    from pgrun.envs import make_env

    env, _ = make_env(env_id, backend, 1)
    episode = make_jax_episode(env, setup.policy, setup.normalize, deterministic)
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


def shrink_frames(stack: np.ndarray, max_side: int = TENSORBOARD_MAX_SIDE) -> np.ndarray:
    """``[T, H, W, C]`` frames with every ``k``-th row and column, the smallest ``k`` that brings
    both sides to at most ``max_side`` pixels (600x400 CartPole becomes 300x200)."""
    factor = math.ceil(max(stack.shape[1:3]) / max_side)
    return stack[:, ::factor, ::factor]


def moviepy_missing() -> str:
    """Why tensorboardX cannot encode videos here, or "" when moviepy imports."""
    try:
        import moviepy  # noqa: F401
    except ImportError:
        return f"moviepy is not installed ({VIDEO_EXTRA} for a video)"
    return ""


def video_summary(stack: np.ndarray, fps: float) -> tuple[Any, str]:
    """``(summary, "")``: the frames as tensorboardX's video summary, an animated GIF played by
    TensorBoard's Images tab; ``(None, why)`` when it cannot be encoded here."""
    import tensorboardX.summary

    missing = moviepy_missing()
    if missing:
        return None, missing
    stride = math.ceil(len(stack) / TENSORBOARD_MAX_FRAMES)
    clip = stack[::stride].transpose(0, 3, 1, 2)[None]  # [1, T, C, H, W]
    try:
        summary = tensorboardX.summary.video("eval/video", clip, fps=max(1, round(fps / stride)))
    except Exception as err:  # an old tensorboardX with a newer numpy or moviepy
        detail = first_line(err) or type(err).__name__
        return None, f"tensorboardX could not encode the video ({detail}; {VIDEO_EXTRA})"
    if not summary.value[0].image.encoded_image_string:  # tensorboardX logs why and writes nothing
        return None, f"tensorboardX could not encode the video with this moviepy ({VIDEO_EXTRA})"
    return summary, ""


def log_video(frames: list[np.ndarray], log_dir: Path, fps: float) -> tuple[str, str]:
    """Log the episode to TensorBoard under ``log_dir`` with tag ``eval/video``, at most
    ``TENSORBOARD_MAX_SIDE`` pixels a side.

    Returns ``(TENSORBOARD_VIDEO, "")`` for an animated GIF (needs moviepy: the ``video`` extra),
    or ``(TENSORBOARD_STRIP, why)`` for the fallback: one still image of eight evenly spaced
    frames side by side.
    """
    from tensorboardX import SummaryWriter

    stack = shrink_frames(np.stack(frames).astype(np.uint8))  # [T, H, W, C]
    summary, why = video_summary(stack, fps)
    writer = SummaryWriter(str(log_dir))
    try:
        if summary is not None:
            writer.file_writer.add_summary(summary, global_step=0)
            return TENSORBOARD_VIDEO, ""
        picks = np.linspace(0, len(stack) - 1, min(TENSORBOARD_STRIP_FRAMES, len(stack))).round().astype(int)
        writer.add_images("eval/video", stack[picks], global_step=0, dataformats="NHWC")
        return TENSORBOARD_STRIP, why
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
        raise EvalError(f"--video cannot render {env_id} ({first_line(err) or err}): install it, "
                        f"or drop --video") from None
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
    path = write_animation(frames, run_dir / VIDEO_DIR, fps)
    tensorboard_dir = run_dir / TENSORBOARD_DIR
    tensorboard_as, tensorboard_note = log_video(frames, tensorboard_dir, fps)
    return Video(path, len(frames), total, tensorboard_dir, tensorboard_as, tensorboard_note)


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
    from pgrun.run_folder import write_json_atomic

    run_dir = Path(run_dir)
    check_options(episodes, backend, checkpoint)
    cfg, backend = check_run(run_dir, checkpoint, seed_index, backend)
    setup = load_policy(run_dir, checkpoint)
    params, obs_stats = setup.member(seed_index)
    env_id = str(cfg.env.id)

    from pgrun.envs import backends

    if backends()[backend].in_jit:
        result = run_jax(setup, params, obs_stats, env_id, episodes, deterministic, seed, backend)
    else:
        result = run_gymnasium(setup, params, obs_stats, env_id, episodes, deterministic, seed)
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
                           "tensorboard_as": recorded.tensorboard_as,
                           **({"tensorboard_note": recorded.tensorboard_note} if recorded.tensorboard_note else {})}
    write_json_atomic(run_dir / EVAL_JSON, report)
    return report


def summary_line(report: dict[str, Any]) -> str:
    """``eval ENV (BACKEND, N episodes, MODE): return MEAN ± STD, length MEAN``."""
    mode = "deterministic" if report["deterministic"] else "sampled"
    seed = f", seed index {report['seed_index']}" if report["seed_index"] else ""
    episodes = f"{report['episodes']} episode{'s' if report['episodes'] != 1 else ''}"
    return (f"eval {report['env']} ({report['backend']}, {episodes}, {mode}{seed}): "
            f"return {report['mean_return']:.1f} ± {report['std_return']:.1f}, "
            f"length {float(np.mean(report['lengths'])):.1f}")
