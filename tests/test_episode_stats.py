"""Episode returns and lengths across batch boundaries, against a plain loop."""

import jax.numpy as jnp
import numpy as np

from pgrun.envs.wrappers import EpisodeStats, accumulate_episodes


def test_episode_statistics_match_a_loop_across_batches():
    rng = np.random.default_rng(0)
    envs, steps, batches = 3, 17, 4
    stats = EpisodeStats.create(envs)
    running_ret, running_len = np.zeros(envs), np.zeros(envs, int)
    for _ in range(batches):
        rewards = rng.normal(size=(steps, envs)).astype(np.float32)
        dones = rng.random((steps, envs)) < 0.2
        count, ret_sum, len_sum = 0, 0.0, 0
        for t in range(steps):
            running_ret += rewards[t]
            running_len += 1
            for e in np.flatnonzero(dones[t]):
                count, ret_sum, len_sum = count + 1, ret_sum + running_ret[e], len_sum + running_len[e]
                running_ret[e], running_len[e] = 0.0, 0
        stats, sums = accumulate_episodes(stats, jnp.asarray(rewards), jnp.asarray(dones))
        assert int(sums["episode_count"]) == count
        np.testing.assert_allclose(float(sums["episode_return_sum"]), ret_sum, rtol=1e-5, atol=1e-4)
        assert int(sums["episode_length_sum"]) == len_sum
        np.testing.assert_allclose(np.asarray(stats.returns), running_ret, rtol=1e-5, atol=1e-4)
        np.testing.assert_array_equal(np.asarray(stats.lengths), running_len)
