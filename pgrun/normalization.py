"""Running statistics of observations and returns, updated inside the jitted loop.

The statistics are part of the training state (and of checkpoints), so the
same observation normalisation serves rollouts, updates and evaluation, and
a resumed run scales rewards exactly as the uninterrupted one would.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class RunningMeanStd:
    """Running mean and variance of a stream of batches (parallel Welford / Chan et al. update)."""

    mean: jax.Array
    var: jax.Array
    count: jax.Array

    @classmethod
    def create(cls, shape: tuple[int, ...]) -> "RunningMeanStd":
        return cls(jnp.zeros(shape, jnp.float32), jnp.ones(shape, jnp.float32), jnp.asarray(1e-4, jnp.float32))

    def update(self, batch: jax.Array) -> "RunningMeanStd":
        """Merge the moments of ``batch[..., *shape]`` (parallel-variance formula)."""
        flat = batch.reshape((-1,) + self.mean.shape)
        b_mean, b_var, b_count = flat.mean(0), flat.var(0), jnp.asarray(flat.shape[0], jnp.float32)
        delta = b_mean - self.mean
        total = self.count + b_count
        mean = self.mean + delta * b_count / total
        m2 = self.var * self.count + b_var * b_count + delta**2 * self.count * b_count / total
        return RunningMeanStd(mean, m2 / total, total)

    def normalize(self, obs: jax.Array, clip: float = 10.0) -> jax.Array:
        return jnp.clip((obs - self.mean) / jnp.sqrt(self.var + 1e-8), -clip, clip)


@flax.struct.dataclass
class RewardScaler:
    """Rewards divided by a running standard deviation of the discounted return.

    A critic whose targets are discounted returns of size 100 (CartPole at
    gamma 0.99) pushes its tanh units into saturation: Adam raises every weight
    at the same pace, and once a hidden layer is saturated the critic predicts
    one value everywhere and no gradient can bring it back. Scaling the
    rewards keeps the targets of order one whatever the task's reward scale, as
    baselines' ``VecNormalize`` and CleanRL's ``NormalizeReward`` do for
    MuJoCo. Only learning sees scaled rewards; episode returns stay raw.
    """

    returns: jax.Array  # [envs] discounted return of each environment's unfinished episode
    stats: RunningMeanStd  # of those discounted returns, over every step seen

    @classmethod
    def create(cls, num_envs: int) -> "RewardScaler":
        return cls(jnp.zeros((num_envs,), jnp.float32), RunningMeanStd.create(()))

    def scale(self, rewards: jax.Array, dones: jax.Array, gamma: jax.Array,
              clip: float = 10.0) -> tuple["RewardScaler", jax.Array]:
        """Fold a ``[time, env]`` batch into the statistics, then return it scaled and clipped.

        The discounted return restarts after every episode end (``dones``),
        and the batch's own returns enter the statistics before it is scaled.
        """
        def step(running, transition):
            reward, done = transition
            running = gamma * running + reward
            return jnp.where(done, 0.0, running), running

        returns, seen = jax.lax.scan(step, self.returns, (rewards.astype(jnp.float32), dones))
        stats = self.stats.update(seen)
        scaled = jnp.clip(rewards / jnp.sqrt(stats.var + 1e-8), -clip, clip)
        return RewardScaler(returns, stats), scaled
