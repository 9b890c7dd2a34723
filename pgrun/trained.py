"""A trained run, loaded for acting: its config, policy and every member's parameters.

Loading builds the policy from the environment's spaces and the algorithm's
pure functions (for the checkpoint's layout), never the training
environments, so evaluating a run that trained on 64 host environments opens
none of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import jax
import numpy as np

from pgrun import checkpoint
from pgrun.config import check_saved_config, schedule
from pgrun.envs import env_spaces
from pgrun.policies import Policy, make_policy
from pgrun.rollout import normalizer_for
from pgrun.run_folder import RunFolder
from pgrun.train import Member, algorithm_for, init_train_state, member_hparams, members_of, over_members
from pgrun.types import Algorithm, TrainState


@dataclass
class TrainedRun:
    """What a checkpoint holds for acting, stacked over members (seeds, and sweep points)."""

    cfg: Any
    policy: Policy
    algorithm: Algorithm
    normalize: Callable
    members: list[Member]
    state: TrainState  # every leaf ``[members, ...]``

    @property
    def seeds(self) -> list[int]:
        return [m.seed for m in self.members]

    def member(self, index: int) -> tuple[Any, Any]:
        """``(params, obs_stats)`` of one member."""
        pick = lambda tree: jax.tree.map(lambda x: x[index], tree)  # noqa: E731
        return pick(self.state.params), pick(self.state.obs_stats)


def load_trained(folder: RunFolder, name: str = "final") -> TrainedRun:
    """The run in ``folder`` as its ``name`` checkpoint left it.

    Raises ``FileNotFoundError`` without a saved config or that checkpoint,
    :class:`~pgrun.errors.ConfigError` for a run an older pgrun wrote, and
    ``ValueError`` when the checkpoint does not fit the config.
    """
    for required in (folder.config_path, folder.checkpoint(name)):
        if not required.exists():
            raise FileNotFoundError(required)
    cfg = folder.load_config()
    check_saved_config(cfg, folder.path)
    observation_space, action_space = env_spaces(cfg.env.id, cfg.env.backend)
    policy = make_policy(observation_space, action_space, cfg.algo.hidden_sizes, cfg.algo.activation,
                         cfg.algo.bounded_mean)
    _, members = members_of(cfg)
    run = TrainedRun(cfg, policy, algorithm_for(cfg, policy, schedule(cfg).total),
                     normalizer_for(cfg.env.normalize_obs), members, None)
    seeds = np.asarray(run.seeds, np.uint32)
    init = over_members(lambda s, hp: init_train_state(run, jax.random.PRNGKey(s), hp), len(seeds))
    template = jax.eval_shape(init, seeds, member_hparams(cfg, members))
    run.state = checkpoint.restore_into(template, checkpoint.read(folder.checkpoint(name))["state"]["train"])
    return run
