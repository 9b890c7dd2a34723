"""The shared vocabulary: what flows between the loop and the algorithms, and
what an algorithm module must export to be found.

Near the bottom of the import graph (it imports only leaf modules), so the
environments, algorithms, trainer and front ends can all speak these types
without importing one another.

An algorithm module under ``pgrun/algos/`` exports ``ALGORITHM``, an
:class:`AlgorithmSpec`: its name, a one-line summary, its typed config (an
:class:`AlgoConfig` subclass), the checks its config needs beyond types, and
the builder of its pure update. The registry (:mod:`pgrun.algos`) finds it;
the config schemas, the command-line choices and help, validation, the
HParams columns and the documentation table are derived from there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

import flax.struct
import jax
from omegaconf import MISSING

from pgrun.envs.wrappers import EpisodeStats
from pgrun.normalization import RewardScaler, RunningMeanStd

if TYPE_CHECKING:
    from pgrun.policies import Policy


@flax.struct.dataclass
class Batch:
    """One rollout, ``[time, env, ...]``, with raw (unnormalised) observations."""

    obs: jax.Array
    actions: jax.Array
    log_probs: jax.Array  # of the behaviour policy, at collection time
    rewards: jax.Array
    terminated: jax.Array
    dones: jax.Array  # terminated or truncated
    next_obs: jax.Array  # true successor observation (final observation at an episode end)


@flax.struct.dataclass
class TrainState:
    """One member's learner, and what the loop keeps beside it between iterations.

    The algorithm owns ``params``, ``opt_state`` and ``algo_state``; the loop
    owns the statistics, the episode counters and the iteration count. All of
    it is checkpointed together.
    """

    params: Any
    opt_state: Any
    obs_stats: RunningMeanStd
    reward_scaler: RewardScaler  # updated only with env.normalize_reward
    episodes: EpisodeStats
    iteration: jax.Array
    algo_state: Any = flax.struct.field(default_factory=dict)  # e.g. PPO's adaptive KL beta
    # The real-valued hyperparameters (``lr``, ``gamma``, ...) as traced scalars: members of
    # a vectorised sweep carry different values through the same compiled program.
    hparams: Any = flax.struct.field(default_factory=dict)


Update = Callable[[TrainState, Batch, jax.Array], tuple[TrainState, dict[str, jax.Array]]]


class Algorithm(NamedTuple):
    """How to initialise an algorithm's optimiser and own state, and its pure update.

    The update reads its real-valued hyperparameters from ``state.hparams``,
    never from the config, so they stay inputs of the compiled program.
    Metric names are TensorBoard tags (``losses/...``, ``natural/...``).
    """

    init_opt_state: Callable[[Any], Any]
    update: Update
    init_algo_state: Callable[[dict[str, jax.Array]], Any] = lambda hparams: {}


@dataclass
class AlgoConfig:
    """Hyperparameters shared by every algorithm.

    Real-valued (``float``) keys are traced inputs of the compiled program, so
    ``sweep.vmap`` can vary them; integer, boolean and string keys shape it.
    """

    name: str = MISSING
    lr: float = MISSING  # Adam step size (NPG/TRPO: of the critic; the policy step is set by delta)
    gamma: float = MISSING
    num_steps: int = MISSING  # rollout length per environment and iteration
    hidden_sizes: list[int] = field(default_factory=lambda: [64, 64])
    activation: str = "tanh"
    max_grad_norm: float = 0.5
    anneal_lr: bool = False  # linear decay of the learning rate to 0
    norm_adv: bool = True  # normalise advantages (per minibatch for PPO, per batch otherwise)
    log_std_init: float = 0.0  # initial log standard deviation of a Gaussian policy (continuous actions)
    bounded_mean: bool = False  # a Gaussian policy's mean through tanh, inside the action box


class AlgoContext(NamedTuple):
    """What an algorithm may know of the run beyond its own config."""

    num_envs: int  # environments per member
    env_id: str
    time_limit: int | None  # the environment's episode limit, when it has one

    def batch_size(self, algo: Any) -> int:
        """Environment steps per iteration and member."""
        return self.num_envs * algo.num_steps


Builder = Callable[[Any, "Policy", int, AlgoContext], Algorithm]


def no_checks(algo: Any, context: AlgoContext) -> None:
    """For algorithms whose keys need no check beyond the shared ones."""


@dataclass(frozen=True)
class AlgorithmSpec:
    """What an algorithm module registers (as its module-level ``ALGORITHM``)."""

    name: str  # the command-line name: algo=<name>, conf/algo/<name>.yaml
    summary: str  # one line under 110 characters, for `pgrun --help` and the README's table
    config: type  # its AlgoConfig subclass: the schema its YAML is checked against
    # build(algo config, policy, iterations in the run, context) -> Algorithm
    build: Builder
    # raise ConfigError (pgrun.errors.require) for values its types allow but it cannot use
    validate: Callable[[Any, AlgoContext], None] = no_checks
    paper: str = ""  # the reference, e.g. "Schulman et al., 2017"
