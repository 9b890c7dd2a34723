"""pgrun-eval --video in TensorBoard: an animated GIF with moviepy (the ``video`` extra), and
without it a still strip of frames that the report and the command's output call what it is."""

import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from conftest import compose_config
from pgrun import evaluate as evaluation
from pgrun.commands import evaluate as command
from pgrun.run import run_training

TINY = ("env=CartPole-v1", "num_envs=2", "algo.num_steps=16", "total_timesteps=256", "eval.every=0", "quiet=true")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("trained")
    cfg = compose_config(*TINY)
    run_training(cfg, run_dir)
    (run_dir / ".hydra").mkdir(exist_ok=True)
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    return run_dir


@pytest.fixture
def run_dir(trained, tmp_path) -> Path:
    """A fresh copy of the trained run, so each test reads only the event file it wrote."""
    return Path(shutil.copytree(trained, tmp_path / "run"))


def tensorboard_image(log_dir: Path):
    """The one ``eval/video`` image summary in ``log_dir``, decoded by Pillow."""
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(log_dir), size_guidance={"images": 0})
    accumulator.Reload()
    [event] = accumulator.Images("eval/video")
    return Image.open(io.BytesIO(event.encoded_image_string))


def test_with_moviepy_tensorboard_gets_an_animated_gif(run_dir):
    pytest.importorskip("moviepy", reason="the video extra is not installed")
    report = evaluation.evaluate(run_dir, episodes=1, deterministic=True, video=True)
    video = report["video"]
    assert video["tensorboard_as"] == "video" and "tensorboard_note" not in video
    image = tensorboard_image(run_dir / video["tensorboard_dir"])
    assert image.format == "GIF" and image.is_animated
    assert 1 < image.n_frames <= video["frames"]
    # CartPole renders 600x400: shrunk by two to fit TENSORBOARD_MAX_SIDE
    assert image.size == (300, 200)


def test_without_moviepy_tensorboard_gets_a_still_strip_and_says_so(run_dir, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "moviepy", None)  # import moviepy raises ImportError
    command.main([str(run_dir), "--video", "--episodes", "1", "--deterministic"])
    video = json.loads((run_dir / "eval.json").read_text())["video"]
    assert video["tensorboard_as"] == "frame strip"
    assert video["tensorboard_note"] == "moviepy is not installed (pip install 'pgrun[video]' for a video)"
    out = capsys.readouterr().out
    assert "(tag eval/video, not a video: one still image of 8 frames side by side, as moviepy is not installed" in out
    image = tensorboard_image(run_dir / "eval")
    assert image.format == "PNG" and not getattr(image, "is_animated", False)
    assert image.size == (8 * 300, 200)  # eight shrunk frames in a row


def test_an_encoding_failure_falls_back_and_names_it(tmp_path, monkeypatch):
    def old_tensorboardx(*args, **kwargs):
        raise TypeError("reshape() got an unexpected keyword argument 'newshape'")

    monkeypatch.setattr(evaluation, "moviepy_missing", lambda: "")
    monkeypatch.setattr("tensorboardX.summary.video", old_tensorboardx)
    frames = [np.full((40, 60, 3), i, np.uint8) for i in range(20)]
    kind, why = evaluation.log_video(frames, tmp_path, fps=30)
    assert kind == "frame strip"
    assert why.startswith("tensorboardX could not encode the video (reshape() got an unexpected keyword")
    assert why.endswith("pip install 'pgrun[video]')")


def test_frames_shrink_by_a_whole_factor_to_fit():
    stack = np.zeros((3, 400, 600, 3), np.uint8)
    assert evaluation.shrink_frames(stack).shape == (3, 200, 300, 3)
    assert evaluation.shrink_frames(stack, max_side=600).shape == stack.shape
    assert evaluation.shrink_frames(stack, max_side=100).shape == (3, 67, 100, 3)
