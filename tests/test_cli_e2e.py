"""The CLI end to end: train, read summary.json, and query a real TensorBoard server."""

import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

from conftest import run_cli

EXPECTED_TAGS = [
    "charts/episodic_return", "charts/episodic_length", "charts/sps", "charts/learning_rate",
    "losses/policy_loss", "losses/value_loss", "losses/entropy", "losses/approx_kl",
    "losses/clip_fraction", "losses/explained_variance",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post_json(url: str, payload: dict):
    request = urllib.request.Request(url, data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("cli")
    run_dir = work / "run"
    result = run_cli("total_timesteps=20480", "log_interval=5", f"hydra.run.dir={run_dir}", cwd=work)
    assert result.returncode == 0, result.stderr
    return run_dir, result


def test_run_prints_progress_and_final_return(trained_run):
    _, result = trained_run
    assert "steps/s" in result.stdout and "final mean return" in result.stdout


def test_run_directory_holds_the_contract(trained_run):
    run_dir, _ = trained_run
    summary = json.loads((run_dir / "summary.json").read_text())
    for key in ("algo", "env", "seeds", "env_steps", "wall_seconds", "compile_seconds", "sps",
                "final_return_mean", "final_return_std", "returns_per_seed"):
        assert key in summary, key
    assert summary["algo"] == "ppo" and summary["env"] == "CartPole-v1" and summary["seeds"] == [0]
    assert summary["env_steps"] == 20480 and len(summary["returns_per_seed"]) == 1
    assert summary["final_return_mean"] == pytest.approx(summary["returns_per_seed"][0])
    assert (run_dir / ".hydra" / "config.yaml").exists()
    assert (run_dir / "checkpoints" / "final.msgpack").stat().st_size > 0
    assert (run_dir / "checkpoints" / "latest.msgpack").stat().st_size > 0
    provenance = json.loads((run_dir / "provenance.json").read_text())
    import jax

    assert provenance["packages"]["jax"] == jax.__version__
    assert provenance["jax_backend"] == jax.default_backend() and provenance["jax_devices"]
    assert any("total_timesteps=20480" in arg for arg in provenance["command"])


def test_tensorboard_serves_every_tag_once_per_logging_step(trained_run):
    run_dir, _ = trained_run
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(run_dir), "--host", "127.0.0.1",
         "--port", str(port), "--reload_interval", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        tags = {}
        while time.time() < deadline:
            try:
                tags = get_json(f"{base}/data/plugin/scalars/tags")
                if tags and all(t in next(iter(tags.values()), {}) for t in EXPECTED_TAGS):
                    break
            except OSError:
                pass
            time.sleep(1)
        assert len(tags) == 1, tags
        run_name, run_tags = next(iter(tags.items()))
        missing = [t for t in EXPECTED_TAGS if t not in run_tags]
        assert not missing, f"tags not served: {missing}"
        # 20,480 steps / (4 envs x 128 steps x 5 iterations) = 8 logging steps.
        expected_steps = [2560 * (i + 1) for i in range(8)]
        for tag in EXPECTED_TAGS:
            query = urllib.parse.urlencode({"run": run_name, "tag": tag})
            points = get_json(f"{base}/data/plugin/scalars/scalars?{query}")
            assert [p[1] for p in points] == expected_steps, (tag, points)
        # The HParams dashboard lists the run with its hyperparameters and final return.
        experiment = post_json(f"{base}/data/plugin/hparams/experiment", {"experimentName": ""})
        hparam_names = {h["name"] for h in experiment["hparamInfos"]}
        assert {"algo.lr", "algo.clip_eps", "env.id", "seed"} <= hparam_names
        groups = post_json(f"{base}/data/plugin/hparams/session_groups", {
            "experimentName": "", "startIndex": 0, "sliceSize": 10, "colParams": [],
            "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]})
        assert groups["totalSize"] == 1
        summary = json.loads((run_dir / "summary.json").read_text())
        metric = groups["sessionGroups"][0]["metricValues"][0]
        assert metric["value"] == pytest.approx(summary["final_return_mean"], rel=1e-5)
    finally:
        server.terminate()
        server.wait(timeout=30)
