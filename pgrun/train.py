"""Training: build the jitted program for a config and drive it block by block.

One *iteration* is rollout + advantages + algorithm update. On the JAX path
a *block* of ``log_interval`` iterations is a single ``lax.scan``, vmapped
over the run's *members* and compiled once ahead of time; Python only loops
over blocks to log and checkpoint. On the Gymnasium path the environment steps
on the host, while acting and the update are the same jitted functions,
vmapped over members.

After every ``eval.every`` iterations (whole blocks) and after the last
block, each member's current policy plays ``eval.episodes`` complete episodes
on environments of its own: a compiled program vmapped over members and
episodes on the JAX path, separate host environments on the Gymnasium path.

A member is one independently trained policy: a seed (``num_seeds``) and, in a
vectorised sweep (``sweep.vmap``), one point of the sweep. Members differ only
in data -- their PRNG keys and their real-valued hyperparameters, which enter
as traced inputs -- so one compiled program serves them all.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from pgrun.algos import make_algorithm
from pgrun.types import AlgoContext, Algorithm, Batch, TrainState
from pgrun.capacity import check_capacity
from pgrun.checkpoint import restore_into
from pgrun.devices import Placement, place_members
from pgrun.errors import TrainingError
from pgrun.record import RunRecord
from pgrun.config import Schedule, algo_hparams, point_name, schedule, sweep_points
from pgrun.envs import backends, env_spaces, episode_time_limit, make_env, resolve_backend
from pgrun.envs.gym_bridge import GymVectorEnv
from pgrun.envs.wrappers import EpisodeStats, accumulate_episodes
from pgrun.episodes import MAX_EPISODE_STEPS, make_acting, make_jax_episode
from pgrun.normalization import RewardScaler, RunningMeanStd
from pgrun.policies import Policy, make_policy
from pgrun.rollout import Normalizer, act, make_rollout, normalizer_for


# Initialisation runs once, so its compile time is all that counts: on the CPU backend, without
# LLVM's optimisations and XLA's CPU fusion emitters it compiles about 3x faster (0.6 s instead
# of 2.3 s for PPO's actor and critic on a 2-core CPU). Accelerators compile it as usual.
CPU_RUN_ONCE_OPTIONS = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}

# Evaluation keys are folded out of a member's training key with this constant (never split from it), so
# training draws exactly the same numbers whether evaluation is on or off.
EVAL_STREAM = 0x6576616C  # "eval"
# What a block returns beside its per-iteration metrics when it ends with an evaluation.
EVAL_RETURNS, EVAL_LENGTHS, EVAL_DONE = "eval_returns", "eval_lengths", "eval_done"


def compile_run_once(jitted: Callable, *args: Any) -> Callable:
    """Compile a program that is called once, for the least compile time. An XLA that does not
    know one of the options (older jaxlib releases lack the fusion-emitter flag) compiles it
    with XLA's defaults instead."""
    lowered = jitted.lower(*args)
    if jax.default_backend() != "cpu":
        return lowered.compile()
    try:
        return lowered.compile(CPU_RUN_ONCE_OPTIONS)
    except Exception as err:  # noqa: BLE001 - XlaRuntimeError's module moved between jaxlib releases
        if "No such compile option" not in str(err):
            raise
        return lowered.compile()


@dataclass(frozen=True)
class Member:
    """One independently trained policy of a run."""

    seed: int
    point: dict[str, float]  # the sweep.vmap values it trains with ({} outside a vectorised sweep)


@dataclass
class Setup:
    """Everything static about a run, derived from its config."""

    cfg: Any
    env: Any  # a JAX Env, or a GymVectorEnv on the host
    backend: str  # the backend's name in pgrun.envs.backends(): "jax", "gymnasium", ...
    policy: Policy
    algorithm: Algorithm
    normalize: Normalizer
    schedule: Schedule
    points: list[dict[str, float]]  # sweep points, [{}] without a vectorised sweep
    members: list[Member]  # every point times every seed, point-major
    eval_period: int = 0  # iterations between evaluations, a multiple of block_len; 0: no evaluation
    placement: Placement | None = None  # the devices members train on; None: all on the default device

    def __post_init__(self) -> None:
        if self.placement is None:
            self.placement = Placement.single(len(self.members))

    @property
    def block_len(self) -> int:
        return self.schedule.block_len

    @property
    def num_blocks(self) -> int:
        return self.schedule.num_blocks

    @property
    def num_iterations(self) -> int:
        return self.schedule.total

    @property
    def steps_per_iteration(self) -> int:
        return self.cfg.num_envs * self.cfg.algo.num_steps

    @property
    def seeds(self) -> list[int]:
        """Each member's seed, in member order."""
        return [m.seed for m in self.members]

    def evaluation_due(self, iteration: int) -> bool:
        """Whether an evaluation follows the block that ends at ``iteration``: every
        ``eval_period`` iterations, and after the last block so the final policy is always
        measured. Decided from the saved iteration count, so a resumed run keeps the schedule."""
        return iteration % self.eval_period == 0 or iteration == self.schedule.total

    def member_hparams(self) -> dict[str, np.ndarray]:
        """Each real-valued hyperparameter stacked over members (float32 ``[members]``)."""
        return member_hparams(self.cfg, self.members)


def members_of(cfg: Any) -> tuple[list[dict[str, float]], list[Member]]:
    """``(sweep points, members)``: every point of ``sweep.vmap`` times every seed, point-major."""
    points = sweep_points(cfg)
    return points, [Member(cfg.seed + i, point) for point in points for i in range(cfg.num_seeds)]


def member_hparams(cfg: Any, members: list[Member]) -> dict[str, np.ndarray]:
    """Each real-valued hyperparameter stacked over ``members`` (float32 ``[members]``)."""
    base = algo_hparams(cfg.algo)
    rows = [{**base, **{k.split(".", 1)[1]: v for k, v in m.point.items()}} for m in members]
    return {name: np.asarray([row[name] for row in rows], np.float32) for name in base}


def algorithm_for(cfg: Any, policy: Policy, num_iterations: int) -> Algorithm:
    """The run's algorithm, told what it may know of the environment."""
    return make_algorithm(cfg.algo, policy, num_iterations,
                          AlgoContext(cfg.num_envs, cfg.env.id, episode_time_limit(cfg.env.id, cfg.env.backend)))


def build(cfg: Any) -> Setup:
    """Everything static about a run: environments, policy, algorithm, schedule, members."""
    run_schedule = schedule(cfg)
    points, members = members_of(cfg)
    in_jit = backends()[resolve_backend(cfg.env.id, cfg.env.backend)].in_jit
    placement = place_members(cfg.get("devices", "all"), len(members), in_jit, f"{cfg.env.id} ({cfg.env.backend})")
    observation_space, action_space = env_spaces(cfg.env.id, cfg.env.backend)
    check_capacity(len(members), cfg.num_envs, cfg.algo.num_steps, int(np.prod(observation_space.shape)),
                   int(np.prod(getattr(action_space, "shape", ()) or (1,))))
    env, backend = make_env(cfg.env.id, cfg.env.backend, cfg.num_envs * len(members))
    hidden, activation = cfg.algo.hidden_sizes, cfg.algo.activation
    policy = make_policy(env.observation_space, env.action_space, hidden, activation, cfg.algo.bounded_mean)
    algorithm = algorithm_for(cfg, policy, run_schedule.total)
    return Setup(cfg, env, backend, policy, algorithm, normalizer_for(cfg.env.normalize_obs),
                 run_schedule, points, members, eval_period(cfg, run_schedule.block_len), placement)


def eval_period(cfg: Any, block_len: int) -> int:
    """``eval.every`` rounded down to whole logging blocks (at least one), as
    ``checkpoint.every`` is, so each evaluation is logged at a block boundary; 0 when off
    (and for runs saved before evaluation existed, which have no ``eval`` section)."""
    every = int(cfg.eval.every) if cfg.get("eval") is not None else 0
    return max(1, every // block_len) * block_len if every > 0 else 0


def init_train_state(setup: Any, key: jax.Array, hparams: dict[str, jax.Array] | None = None) -> TrainState:
    """A fresh learner; ``hparams`` defaults to the config's own values. ``setup`` is anything
    with the run's ``cfg``, ``policy`` and ``algorithm`` (a :class:`Setup`, a trained run)."""
    if hparams is None:
        hparams = algo_hparams(setup.cfg.algo)
    hparams = {name: jnp.asarray(value, jnp.float32) for name, value in hparams.items()}
    params = setup.policy.init(key, hparams["log_std_init"])
    return TrainState(params=params, opt_state=setup.algorithm.init_opt_state(params),
                      obs_stats=RunningMeanStd.create((setup.policy.obs_dim,)),
                      reward_scaler=RewardScaler.create(setup.cfg.num_envs),
                      episodes=EpisodeStats.create(setup.cfg.num_envs), iteration=jnp.zeros((), jnp.int32),
                      algo_state=setup.algorithm.init_algo_state(hparams), hparams=hparams)


def make_learn(setup: Setup) -> Callable[[TrainState, Batch, jax.Array], tuple[TrainState, dict]]:
    """Episode bookkeeping, normalisation and the algorithm update for one batch.

    The batch is normalised with the statistics it was collected under (so
    the behaviour log-probabilities stay consistent); the statistics absorb the
    batch afterwards.
    """
    update, normalize = setup.algorithm.update, setup.normalize

    def learn(state: TrainState, batch: Batch, key: jax.Array):
        episodes, episode_metrics = accumulate_episodes(state.episodes, batch.rewards, batch.dones)
        seen = batch.replace(obs=normalize(state.obs_stats, batch.obs),
                             next_obs=normalize(state.obs_stats, batch.next_obs))
        if setup.cfg.env.normalize_reward:
            scaler, rewards = state.reward_scaler.scale(batch.rewards, batch.dones, state.hparams["gamma"])
            seen, state = seen.replace(rewards=rewards), state.replace(reward_scaler=scaler)
        state, metrics = update(state, seen, key)
        if setup.cfg.env.normalize_reward:
            metrics["charts/reward_scale"] = 1.0 / jnp.sqrt(state.reward_scaler.stats.var + 1e-8)
        # 1 while every parameter is finite: a diverging update is caught in the iteration it happens.
        metrics["health/params_finite"] = jnp.all(jnp.asarray(
            [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(state.params)])).astype(jnp.float32)
        obs_stats = state.obs_stats.update(batch.obs) if setup.cfg.env.normalize_obs else state.obs_stats
        state = state.replace(episodes=episodes, obs_stats=obs_stats, iteration=state.iteration + 1)
        return state, {**metrics, **episode_metrics}

    return learn


def over_members(fn: Callable, num_members: int) -> Callable:
    """``jax.vmap(fn)`` over the leading member axis.

    A single member skips the vmap (squeezing and restoring the axis instead):
    XLA then sees plain matrix products rather than batched ones of batch 1,
    which compiles faster and runs faster on CPU.
    """
    if num_members > 1:
        return jax.vmap(fn)

    def single(*args):
        out = fn(*jax.tree.map(lambda x: x[0], args))
        return jax.tree.map(lambda x: x[None], out)

    return single


def within_budget(iteration: Callable, num_iterations: int) -> Callable:
    """``iteration``, or nothing (the state as it was, zero metrics) once the run has done
    ``num_iterations``: how the short last block of a :class:`~pgrun.config.Schedule` runs the
    same compiled block. Under the member vmap the condition becomes a select, so skipped
    iterations still compute (only in that block) but change nothing."""

    def run_or_skip(runner: "JaxRunner", unused: Any) -> tuple["JaxRunner", dict]:
        metrics = jax.eval_shape(iteration, runner, unused)[1]
        skip = lambda r: (r, jax.tree.map(lambda m: jnp.zeros(m.shape, m.dtype), metrics))
        return jax.lax.cond(runner.train.iteration < num_iterations, lambda r: iteration(r, unused), skip, runner)

    return run_or_skip


@flax.struct.dataclass
class JaxRunner:
    """What the JAX path carries from one block to the next (per member)."""

    train: TrainState
    env_state: Any
    obs: jax.Array
    key: jax.Array


class JaxLoop:
    """The whole block -- rollouts and updates -- as one compiled program."""

    def __init__(self, setup: Setup):
        self.setup = setup
        rollout = make_rollout(setup.env, setup.policy, setup.normalize, setup.cfg.algo.num_steps)
        learn = make_learn(setup)

        def iteration(runner: JaxRunner, _):
            key, k_roll, k_learn = jax.random.split(runner.key, 3)
            env_state, obs, batch = rollout(runner.train.params, runner.train.obs_stats, runner.env_state,
                                            runner.obs, k_roll)
            train, metrics = learn(runner.train, batch, k_learn)
            return JaxRunner(train, env_state, obs, key), metrics

        if setup.schedule.total % setup.block_len:
            iteration = within_budget(iteration, setup.schedule.total)

        def block(runner: JaxRunner):
            return jax.lax.scan(iteration, runner, None, length=setup.block_len)

        self._block = self.over_devices(block, donate_argnums=0)
        self._compiled = None
        self._evaluate = self.over_devices(make_jax_evaluation(setup, one_device=True)) if setup.eval_period else None

    def over_devices(self, member_fn: Callable, **jit_options: Any) -> Callable:
        """``member_fn`` jitted over every member: vmapped on one device (as it always was there), and
        with the member axis split over the devices by the run's :class:`~pgrun.devices.Placement`."""
        placement = self.setup.placement
        if not placement.sharded:
            return jax.jit(over_members(member_fn, len(self.setup.members)), **jit_options)
        return placement.jit(over_members(member_fn, placement.per_device), **jit_options)

    def initializer(self) -> tuple[Callable, tuple]:
        """The jitted initialisation of every member, and the arguments to call it with."""
        setup = self.setup

        def init_one(seed, hparams):
            key = jax.random.PRNGKey(seed)
            k_params, k_env, k_run = jax.random.split(key, 3)
            obs, env_state = jax.vmap(setup.env.reset)(jax.random.split(k_env, setup.cfg.num_envs))
            return JaxRunner(init_train_state(setup, k_params, hparams), env_state, obs, k_run)

        init = self.over_devices(init_one)
        seeds = jnp.asarray(setup.seeds, jnp.uint32)
        return init, setup.placement.put(setup.placement.pad((seeds, setup.member_hparams())))

    def start(self) -> JaxRunner:
        """Compile the initialisation (and the evaluation) beside the block, then initialise every member.

        XLA releases the GIL while it compiles, so compiling the small
        programs in a worker thread hides most of their cost behind the
        block's compilation; nothing executes until all are compiled.
        """
        init, args = self.initializer()
        shapes = jax.eval_shape(init, *args)
        with ThreadPoolExecutor(max_workers=1) as pool:
            compiling_init = pool.submit(compile_run_once, init, *args)
            if self._evaluate is not None:
                compiling_eval = pool.submit(compile_run_once, self._evaluate, shapes.train.params,
                                             shapes.train.obs_stats, shapes.key)
            self._compiled = self._block.lower(shapes).compile()
            compiled_init = compiling_init.result()
            if self._evaluate is not None:
                self._evaluate = compiling_eval.result()
        return jax.block_until_ready(compiled_init(*args))

    def run_block(self, runner: JaxRunner, iterations: int | None = None) -> tuple[JaxRunner, dict]:
        """One block, of which the first ``iterations`` count (all, but in a short last block the
        others were skipped); then, when one is due, an evaluation (see :func:`make_jax_evaluation`)."""
        runner, metrics = self._compiled(runner)
        placement, iterations = self.setup.placement, iterations or self.setup.block_len
        unpad, fetch = placement.unpad, placement.fetch  # fetch: every process gets every member's values
        metrics = {name: values[:, :iterations] for name, values in unpad(fetch(metrics)).items()}
        if self._evaluate is not None and self.setup.evaluation_due(int(fetch(runner.train.iteration)[0])):
            returns, lengths = unpad(fetch(self._evaluate(runner.train.params, runner.train.obs_stats,
                                                          runner.key)))
            metrics.update({EVAL_RETURNS: returns, EVAL_LENGTHS: lengths, EVAL_DONE: True})
        return runner, metrics

    @staticmethod
    def train_state(runner: JaxRunner) -> TrainState:
        return runner.train

    def checkpoint_state(self, runner: JaxRunner) -> JaxRunner:
        """Everything, environments included, of the run's own members, as whole host arrays (gathered
        from every process of a multi-process job): a resumed run continues exactly, on any number of devices."""
        return self.setup.placement.unpad(self.setup.placement.fetch(runner))

    def restore(self, runner: JaxRunner, saved: dict) -> JaxRunner:
        """The saved members, padded and split over this run's devices."""
        placement = self.setup.placement
        return placement.put(placement.pad(restore_into(placement.unpad(runner), saved)))


def make_jax_evaluation(setup: Setup, one_device: bool = False) -> Callable:
    """``evaluate(params, obs_stats, key) -> (returns, lengths)``, each ``[members, episodes]``;
    with ``one_device``, the program for a single member, which :meth:`JaxLoop.over_devices` spreads.

    Every member plays ``eval.episodes`` whole episodes on fresh instances of
    the JAX port (the training environments carry on undisturbed), vmapped over
    episodes and members, with the observation statistics as they are (not
    updated by what evaluation sees).

    It is a program of its own, called after the blocks an evaluation follows,
    rather than a ``lax.cond`` inside the block: there it added about 40% to the
    block's compile time, while on its own, compiled like the initialisation
    (without backend optimisations) beside the block, it costs a fraction of a
    second of compilation and a few milliseconds per evaluation on CartPole.
    """
    cfg = setup.cfg.eval
    episode = make_jax_episode(setup.env, setup.policy, setup.normalize, cfg.deterministic)

    def evaluate_member(params, obs_stats, key):
        keys = jax.random.split(jax.random.fold_in(key, EVAL_STREAM), cfg.episodes)
        return jax.vmap(episode, in_axes=(None, None, 0))(params, obs_stats, keys)

    return evaluate_member if one_device else over_members(evaluate_member, len(setup.members))


@dataclass
class Evaluation:
    """One evaluation's episodes, ``[members, episodes]``."""

    returns: np.ndarray
    lengths: np.ndarray


def pop_evaluation(metrics: dict) -> Evaluation | None:
    """Take a block's evaluation out of its metrics (it is per episode, not per
    iteration, so the divergence checks and the per-iteration logging must not
    see it); None when the block ended without one."""
    returns, lengths, done = (metrics.pop(key, None) for key in (EVAL_RETURNS, EVAL_LENGTHS, EVAL_DONE))
    if done is None or not bool(done):
        return None
    return Evaluation(np.asarray(returns, np.float64), np.asarray(lengths, np.int64))


class HostEvaluation:
    """Evaluation on the Gymnasium bridge: ``members x episodes`` host environments
    of its own, stepped together with the same acting function as ``pgrun-eval``,
    until every episode has ended."""

    def __init__(self, setup: Setup):
        self.setup, self.episodes = setup, setup.cfg.eval.episodes
        # the run's own host backend (Gymnasium, envpool, ...): the same simulator as training
        self.envs = make_env(setup.cfg.env.id, setup.backend, len(setup.members) * self.episodes)[0]
        acting = make_acting(setup.policy, setup.normalize, setup.cfg.eval.deterministic)

        def act(params, obs_stats, obs, key):
            key, k_act = jax.random.split(key)
            return acting(params, obs_stats, obs, k_act), key

        self._act = jax.jit(jax.vmap(act))  # over members; obs [members, episodes, obs_dim]

    def reset_seed(self, iteration: int) -> int:
        """The first environment's reset seed (the others count up from it): one of the run's own
        for every evaluation, apart from the training environments' seeds."""
        return int(np.random.SeedSequence([EVAL_STREAM, self.setup.seeds[0], iteration]).generate_state(1)[0])

    def __call__(self, train: TrainState, key: jax.Array) -> dict[str, np.ndarray]:
        """Every member's episodes, ``[members, episodes]``; ``key`` is each member's training key,
        from which the sampling keys are folded (it is not advanced)."""
        members = len(self.setup.members)
        obs = self.envs.reset(seed=self.reset_seed(int(jax.device_get(train.iteration)[0])))
        keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(key, EVAL_STREAM)
        returns, lengths = np.zeros(members * self.episodes), np.zeros(members * self.episodes, np.int64)
        running = np.ones(members * self.episodes, bool)
        for _ in range(MAX_EPISODE_STEPS):
            actions, keys = self._act(train.params, train.obs_stats, obs.reshape(members, self.episodes, -1), keys)
            actions = np.asarray(actions)
            out = self.envs.step(actions.reshape((-1,) + actions.shape[2:]))
            returns += np.where(running, out.rewards, 0.0)
            lengths += running
            running &= ~(out.terminated | out.truncated)
            if not running.any():
                break
            obs = out.obs
        shape = (members, self.episodes)
        return {EVAL_RETURNS: returns.reshape(shape), EVAL_LENGTHS: lengths.reshape(shape), EVAL_DONE: True}


@dataclass
class GymRunner:
    """What the host loop carries from one block to the next: learners, observations, keys."""

    train: TrainState
    obs: np.ndarray  # [members, envs, obs_dim]
    key: jax.Array


class GymLoop:
    """Host-side environment stepping around the same jitted act and learn."""

    def __init__(self, setup: Setup):
        self.setup = setup
        self.envs: GymVectorEnv = setup.env  # or any host backend's vector env (envpool, asynchronous Gymnasium)
        policy, normalize = setup.policy, setup.normalize

        def act_and_advance(actor_params, stats, obs, key):
            key, k_act = jax.random.split(key)
            actions, log_probs = act(policy, normalize, {"actor": actor_params}, stats, obs, k_act)
            return actions, policy.to_env_action(actions), log_probs, key

        def learn_and_advance(train, batch, key):
            key, k_learn = jax.random.split(key)
            return (*make_learn(setup)(train, batch, k_learn), key)

        # One dispatch per environment step, one per update; both vmapped over members. Acting takes
        # the actor's parameters only: every argument leaf adds to the cost of a per-step call.
        self._act = jax.jit(jax.vmap(act_and_advance))
        self._learn = jax.jit(jax.vmap(learn_and_advance))
        self._evaluate = HostEvaluation(setup) if setup.eval_period else None
        # wall time of the host loop by part, summed over iterations (scripts/benchmark_mujoco_speed.py reads it)
        self.seconds = {"acting": 0.0, "stepping": 0.0, "learning": 0.0}

    def start(self) -> GymRunner:
        """Initialise every member, reset the host environments, compile act and learn."""
        setup = self.setup
        keys = jax.vmap(jax.random.PRNGKey)(jnp.asarray(setup.seeds, jnp.uint32))
        k_params, k_run = jax.vmap(jax.random.split, out_axes=1)(keys)
        init = jax.jit(jax.vmap(lambda k, hp: init_train_state(setup, k, hp)))
        hparams = setup.member_hparams()
        train = compile_run_once(init, k_params, hparams)(k_params, hparams)
        obs = self.envs.reset(seed=setup.seeds[0] * 1_000_003)
        runner = GymRunner(train, obs.reshape(len(setup.members), setup.cfg.num_envs, -1), k_run)
        self._compile(runner)
        return runner

    def _compile(self, runner: GymRunner) -> None:
        """Compile acting and learning ahead of time, so the first block is not slower."""
        train, obs, key = runner.train, runner.obs, runner.key
        self._act = self._act.lower(train.params["actor"], train.obs_stats, obs, key).compile()
        actions, _, log_probs, _ = self._act(train.params["actor"], train.obs_stats, obs, key)
        shape = obs.shape[:2]
        step = Batch(obs, actions, log_probs, np.zeros(shape, np.float32), np.zeros(shape, bool),
                     np.zeros(shape, bool), obs)
        self._learn = self._learn.lower(train, self._stack([step] * self.setup.cfg.algo.num_steps), key).compile()

    @staticmethod
    def _stack(steps: list[Batch]) -> Batch:
        """Time-major steps -> a per-member batch ``[members, time, envs, ...]``."""
        return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs], axis=1), *steps)

    def run_block(self, runner: GymRunner, iterations: int | None = None) -> tuple[GymRunner, dict]:
        """``iterations`` iterations (a whole block by default); then, when one is due, an evaluation."""
        setup = self.setup
        train, obs, key = runner.train, runner.obs, runner.key
        all_metrics = []
        for _ in range(iterations or setup.block_len):
            steps, obs, key = self._rollout(train, obs, key)
            start = time.perf_counter()
            train, metrics, key = self._learn(train, self._stack(steps), key)
            all_metrics.append(metrics)
            self.seconds["learning"] += time.perf_counter() - start
        metrics = jax.tree.map(lambda *xs: np.stack(xs, axis=1), *jax.device_get(all_metrics))
        if self._evaluate is not None and setup.evaluation_due(int(train.iteration[0])):
            metrics.update(self._evaluate(train, key))
        return GymRunner(train, obs, key), metrics

    def _rollout(self, train: TrainState, obs: np.ndarray, key: jax.Array) -> tuple[list[Batch], np.ndarray, jax.Array]:
        """``algo.num_steps`` steps of every host environment: ``(steps, last observations, key)``."""
        num_members, num_envs = len(self.setup.members), self.setup.cfg.num_envs
        per_seed = lambda x: x.reshape((num_members, num_envs) + x.shape[1:])
        steps, clock = [], time.perf_counter
        for _ in range(self.setup.cfg.algo.num_steps):
            start = clock()
            actions, env_actions, log_probs, key = self._act(train.params["actor"], train.obs_stats, obs, key)
            env_actions = np.asarray(env_actions)
            acted = clock()
            out = self.envs.step(env_actions.reshape((-1,) + env_actions.shape[2:]))
            stepped = clock()
            steps.append(Batch(obs, actions, log_probs, per_seed(out.rewards), per_seed(out.terminated),
                               per_seed(out.terminated | out.truncated), per_seed(out.final_obs)))
            obs = per_seed(out.obs)
            self.seconds["acting"] += acted - start + clock() - stepped
            self.seconds["stepping"] += stepped - acted
        return steps, obs, key

    @staticmethod
    def train_state(runner: GymRunner) -> TrainState:
        return runner.train

    @staticmethod
    def checkpoint_state(runner: GymRunner) -> dict:
        """Learner state and RNG key; host environments cannot be saved, so a
        resumed run restarts their episodes (the only part that is not exact)."""
        return {"train": runner.train, "key": runner.key}

    @staticmethod
    def restore(runner: GymRunner, saved: dict) -> GymRunner:
        """The saved learner, with what belonged to the unfinished episodes cleared: the host
        environments restart theirs, so a saved partial return or length (and the reward
        scaler's running discounted return) would be added to a new episode."""
        state = restore_into({"train": runner.train, "key": runner.key}, saved)
        train = state["train"]
        train = train.replace(episodes=jax.tree.map(jnp.zeros_like, train.episodes),
                              reward_scaler=train.reward_scaler.replace(
                                  returns=jnp.zeros_like(train.reward_scaler.returns)))
        return GymRunner(train, runner.obs, state["key"])


def make_loop(setup: Setup) -> JaxLoop | GymLoop:
    """The compiled loop for a backend inside the jitted program, the host loop otherwise."""
    return JaxLoop(setup) if backends()[setup.backend].in_jit else GymLoop(setup)


def non_finite_members(metrics: dict, first_iteration: int) -> dict[int, tuple[int, str]]:
    """Members whose loss, metric or parameters went non-finite in this block:
    ``{member index: (iteration, what went non-finite there)}`` at the earliest
    such iteration of each member."""
    bad = {}
    for name, values in metrics.items():
        values = np.asarray(values)  # [members, iterations]
        bad[name] = values == 0 if name == "health/params_finite" else ~np.isfinite(values)
    found = {}
    for member in range(next(iter(bad.values())).shape[0]):
        hits = [np.flatnonzero(mask[member]) for mask in bad.values()]
        if not any(h.size for h in hits):
            continue
        first = min(int(h[0]) for h in hits if h.size)
        names = [("the parameters" if n == "health/params_finite" else n) for n, m in bad.items() if m[member, first]]
        found[member] = (first_iteration + first + 1, ", ".join(names))
    return found


def non_finite_message(what: str, iteration: int, member: str) -> str:
    """The one line a run (or a member) that went non-finite reports."""
    return f"{what} became non-finite at iteration {iteration} ({member}); lower algo.lr or algo.max_grad_norm"


def member_label(member: Member) -> str:
    """``seed 3``, or ``algo.lr=0.001, seed 3`` in a vectorised sweep."""
    return f"{point_name(member.point)}, seed {member.seed}" if member.point else f"seed {member.seed}"


@dataclass
class BlockDone:
    """What the trainer hands its callbacks after each block."""

    runner: Any  # the loop's state after the block (what a checkpoint saves)
    metrics: dict[str, np.ndarray]  # per iteration, ``[members, iterations]``
    evaluation: Evaluation | None  # when one followed the block
    newly_failed: dict[int, str]  # members whose training went non-finite in this block: why
    env_steps: int  # per member, after the block
    steps_in_block: int  # per member, in the block (fewer in a short last block)
    seconds: float  # the block's wall time
    last: bool  # the run's final block


BlockCallback = Callable[[BlockDone], None]


def train_blocks(setup: Setup, loop: JaxLoop | GymLoop, runner: Any, record: RunRecord,
                 callbacks: Sequence[BlockCallback]) -> Any:
    """Run the blocks ``record`` has not done yet, updating it and calling each callback after
    every block (logging, progress, checkpoints and stop requests are callbacks: the trainer
    knows none of them). Returns the final runner.

    A member whose training goes non-finite is recorded as failed; outside a vectorised
    sweep, or once every member has failed, :class:`TrainingError` ends training instead.
    """
    run_schedule, vectorised = setup.schedule, setup.points != [{}]
    while record.blocks_done < setup.num_blocks:
        iterations = run_schedule.iterations_in(record.blocks_done)
        start = time.perf_counter()
        runner, metrics = loop.run_block(runner, iterations)
        seconds = time.perf_counter() - start
        evaluation = pop_evaluation(metrics)
        first_iteration = run_schedule.iterations_done(record.blocks_done)
        diverged = {i: found for i, found in non_finite_members(metrics, first_iteration).items()
                    if record.active(i)}
        if diverged and (not vectorised or len(record.failures) + len(diverged) == len(setup.members)):
            i, (iteration, what) = min(diverged.items(), key=lambda item: item[1][0])
            raise TrainingError(non_finite_message(what, iteration, member_label(setup.members[i])))
        newly_failed = {i: non_finite_message(what, iteration, member_label(setup.members[i]))
                        for i, (iteration, what) in diverged.items()}
        record.failures.update(newly_failed)
        record.blocks_done += 1
        record.absorb_block(metrics)
        if evaluation is not None:
            record.absorb_evaluation(evaluation.returns, evaluation.lengths)
        done = BlockDone(runner, metrics, evaluation, newly_failed,
                         run_schedule.iterations_done(record.blocks_done) * setup.steps_per_iteration,
                         iterations * setup.steps_per_iteration, seconds, record.blocks_done == setup.num_blocks)
        for callback in callbacks:
            callback(done)
    return runner
