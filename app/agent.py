"""Phase 5: DQN, and Dyna-DQN that also learns from short rollouts imagined by a world model.

    uv run python -m app.agent                 # DQN (K=0) vs Dyna-DQN (K=10), 3 seeds each
    uv run python -m app.agent --seeds 0 1 2 3 4 --planning-steps 5

Reads nothing (`--warm-start`: checkpoints/world_model.pt; its data are not counted as real steps).
Writes plots/dqn_vs_dyna.png (evaluation return against real steps, mean and 95% band over seeds),
results/agent.json (every run's curve and figures) and checkpoints/dqn.pt (the Dyna agent's
acting Q-network, the evaluated one, first seed: for `app.data_collection --policy epsilon_greedy`).

The Dyna loop (Sutton & Barto, chapter 8), one code path for both arms: every real step goes into
the replay buffer and feeds a Q-learning update; with K > 0 the agent also refits its world model
on its own buffer every `model_train_interval` steps (phase 3's training epoch), rolls it out for
k = `rollout_length` steps from real start states with its current policy (phase 4's
`imagine_rollout`) and makes K more Q-updates on those imagined transitions, whose TD targets look
H = `value_expansion` steps further through the model (LookaheadDQNAgent). K = 0 is plain DQN.
Around the loop, not yours to write: app/replay.py (the buffer), app/screen.py, app/runs.py.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import gymnasium as gym
import torch
import torch.nn.functional as F
from torch import nn

from app.common import (
    CHECKPOINT_PATH,
    ENV_ID,
    NUM_ACTIONS,
    PLOTS_DIR,
    RESULTS_DIR,
    cli,
    configure_threads,
    network_bytes,
    require,
    require_memory,
    require_non_negative,
    require_positive,
    require_probability,
    resolve_device,
    seed_torch,
)
from app.plan_with_model import imagine_rollout
from app.plotting import plot_learning_curves
from app.policies import greedy, q_network, save_q_network
from app.replay import Batch, ReplayBuffer
from app.runner import run_all
from app.runs import Budget, Evaluations, Probe, aggregate, format_table
from app.screen import ScreenConfig, make_screen
from app.storage import require_writable, run_metadata, save_json
from app.train_model import ModelFitter, load_world_model
from app.world_model import EnsembleConfig, WorldModel, new_world_model, trusted_steps

Q_LOSSES = {"huber": F.smooth_l1_loss, "mse": F.mse_loss}
MODEL_FREE = dict(planning_steps=0, value_expansion=0, double_q=False)  # a DQN arm without a model


@dataclass
class Config:
    """Train model-free DQN and Dyna-DQN on CartPole-v1 over several seeds and compare them."""

    seeds: tuple[int, ...] = (0, 1, 2)
    """one run per seed and per arm"""
    planning_steps: int = 10
    """K: Q-updates on imagined transitions per real step, Dyna arm (0 = plain DQN)"""
    rollout_length: int = 1
    """k (not K): steps in each imagined rollout from a real start state (1: Sutton's Dyna-Q)"""
    value_expansion: int = 3
    """H: the targets of the imagined updates look H steps further ahead through the world model
    before they bootstrap (model-based value expansion; 0 = one-step targets)"""
    real_updates: int = 1
    """Q-updates on real transitions per real step (after learning_starts)"""
    lr: float = 2e-3
    """Adam learning rate of the Q-network"""
    gamma: float = 0.99
    """discount factor"""
    batch_size: int = 64
    """transitions per Q-update, real or imagined"""
    hidden_size: int = 128
    """width of the Q-network's two hidden layers"""
    buffer_size: int = 50_000
    """replay buffer capacity (real transitions)"""
    learning_starts: int = 500
    """real steps of uniformly random actions before any update"""
    double_q: bool = True
    """Double DQN in the Dyna arm: the online net picks a', the target net values it"""
    target_update_interval: int = 100
    """update the target network every this many Q-updates (real + imagined)"""
    tau: float = 1.0
    """target <- (1 - tau) target + tau online at each target update (1 = a hard copy)"""
    q_loss: str = "mse"
    """loss on the TD error, mse or huber (huber grows only linearly past an error of 1, so the rare
    transitions where the pole falls are outvoted: docs/results.md, fifth round)"""
    terminal_samples: int = 16
    """of each real batch, this many are drawn from real terminations (0 = uniform batches)"""
    epsilon_start: float = 1.0
    """exploration at the first step"""
    epsilon_end: float = 0.04
    """exploration after the decay"""
    exploration_steps: int = 2_000
    """real steps over which epsilon decays linearly"""
    model_train_interval: int = 250
    """refit the world model on the replay buffer every this many real steps"""
    model_sample: int = 8_192
    """transitions (drawn from the replay buffer) in each world-model refit epoch"""
    model_initial_epochs: int = 100
    """epochs of the first world-model fit, on the warm-up data (skipped with --warm-start)"""
    model_hidden_size: int = 200
    """width of the world model's encoder layers"""
    refit_model: bool = True
    """refit the world model as data arrive (--no-refit-model: fit once, then freeze it)"""
    warm_start: bool = False
    """start the world model from checkpoints/world_model.pt (its data are not counted as steps)"""
    budget: Budget = field(default_factory=Budget)
    """how a run is evaluated and how long it lasts (app/runs.py)"""
    screen: ScreenConfig = field(default_factory=ScreenConfig)
    """the model screen (app/screen.py)"""
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)
    """phase 6: an ensemble world model that ends a rollout where its members disagree"""
    workers: int = 3
    """parallel processes, one thread each (3 on 2 cores: the three Dyna runs share them)"""
    plot: Path = PLOTS_DIR / "dqn_vs_dyna.png"
    """where to write the learning curves"""
    results: Path = RESULTS_DIR / "agent.json"
    """where to write every run's curve and figures"""
    q_checkpoint: Path = Path("checkpoints/dqn.pt")
    """where to save the Dyna agent's Q-network (first seed)"""
    device: str = "cpu"
    """cpu, or cuda when a GPU is present"""

    def __post_init__(self) -> None:
        require_positive(
            self, "rollout_length", "lr", "batch_size", "hidden_size", "buffer_size",
            "target_update_interval", "exploration_steps", "model_train_interval", "model_sample",
            "model_initial_epochs", "model_hidden_size", "workers", "gamma", "tau",
            "learning_starts",  # >= 1: the model's first fit needs data
        )  # fmt: skip
        require_non_negative(self, "planning_steps", "real_updates", "value_expansion")
        require_probability(self, "epsilon_start", "epsilon_end", "gamma", "tau")
        require(len(self.seeds) > 0, "--seeds needs at least one seed")
        E, buffer = self.ensemble.ensemble_size, min(self.buffer_size, self.budget.max_steps)
        run = network_bytes(self.model_hidden_size, 3, min(self.model_sample, buffer), E)
        run += 3 * network_bytes(self.hidden_size, 2, self.batch_size) + 48 * buffer
        require_memory(run * min(self.workers, 2 * len(self.seeds)), "runs of these sizes")
        require(self.q_loss in Q_LOSSES, f"--q-loss must be huber or mse, got {self.q_loss!r}")
        require(
            0 <= self.terminal_samples <= self.batch_size,
            f"--terminal-samples must be in [0, --batch-size], got {self.terminal_samples}",
        )
        require(
            not (self.warm_start and self.ensemble.ensemble_size > 1),
            "--warm-start loads one model; it cannot start an --ensemble-size > 1 ensemble",
        )


# ----------------------------------------------------------------------------- the DQN


class DQNAgent:
    """A Q-network, its target network and optimiser; `generator` draws exploration's coins."""

    def __init__(self, cfg: Config, device: torch.device, generator: torch.Generator) -> None:
        self.q_network = q_network(cfg.hidden_size).to(device)
        self.target_network = q_network(cfg.hidden_size).to(device)
        self.target_network.load_state_dict(self.q_network.state_dict())
        self.optimizer = torch.optim.Adam(self.q_network.parameters(), lr=cfg.lr, fused=True)
        self.gamma, self.double_q, self.tau = cfg.gamma, cfg.double_q, cfg.tau
        self.target_update_interval = cfg.target_update_interval
        self.td_loss = Q_LOSSES[cfg.q_loss]  # (prediction, target) -> scalar
        self.generator, self.updates = generator, 0

    @torch.no_grad()
    def select_action(
        self, states: torch.Tensor, epsilon: float, network: nn.Module | None = None
    ) -> torch.Tensor:
        """Epsilon-greedy: (B, S) states -> (B,) actions, each random with probability epsilon,
        uniform over all A actions (so the greedy one is picked with probability 1 - epsilon +
        epsilon / A). Greedy with respect to `network`, the learner by default."""
        # TODO(phase 5): greedy actions from the Q-network, each replaced by a uniformly random
        # action with probability epsilon.
        # HINT: argmax over dim 1 of the Q-values of `network` (None: self.q_network); draw the
        #       coins (torch.rand) first, then the random actions (torch.randint), both with
        #       generator=self.generator so a seed fixes them; torch.where picks per row.
        #       Leave the (B,) result in `actions`.
        # ### BEGIN SOLUTION (phase 5: DQNAgent.select_action)
        q_values = (self.q_network if network is None else network)(states)  # (B, A)
        greedy = q_values.argmax(dim=1)  # (B,)
        B = len(states)
        explore = torch.rand(B, generator=self.generator) < epsilon
        random_actions = torch.randint(NUM_ACTIONS, (B,), generator=self.generator)
        actions = torch.where(explore.to(greedy.device), random_actions.to(greedy.device), greedy)
        # ### END SOLUTION
        assert actions.shape == (len(states),), f"actions must be (B,), got {tuple(actions.shape)}"
        return actions

    @torch.no_grad()  # the target is a fixed regression label: no gradient flows into it
    def td_target(self, batch: Batch) -> torch.Tensor:
        """(B,) Q-learning targets r + gamma * Q_target(s', a') * (1 - terminated).

        a' is the target network's own best action, or with `double_q` the online network's
        (Double DQN: the network that picks a' is not the one that values it, so noise in the
        estimates is not systematically maximised).
        Only `terminated` cuts the bootstrap. A time-limit truncation is not an end of the MDP:
        the pole was still up, so the value of s' is real and must be counted (truncated
        transitions are stored with terminated = False).
        """
        # TODO(phase 5): the bootstrapped target, cut only where the episode truly terminated.
        # HINT: self.target_network(next_state).max(dim=1).values is max_a' Q_target(s', a').
        # HINT: for double_q, a' = argmax of self.q_network(next_state); .gather(1, a'[:, None]).
        # HINT: target = reward + self.gamma * (1 - terminated) * value of s', left in `target`.
        # ### BEGIN SOLUTION (phase 5: DQNAgent.td_target)
        next_q = self.target_network(batch["next_state"])  # (B, A)
        if self.double_q:
            best = self.q_network(batch["next_state"]).argmax(dim=1, keepdim=True)  # (B, 1)
            next_value = next_q.gather(1, best).squeeze(1)  # (B,)
        else:
            next_value = next_q.max(dim=1).values  # (B,)
        not_done = 1.0 - batch["terminated"].float()
        target = batch["reward"] + self.gamma * not_done * next_value
        # ### END SOLUTION
        assert target.shape == batch["reward"].shape, "the TD target must be (B,)"
        return target

    def train_on_batch(self, batch: Batch) -> float:
        """One Q-learning step on a batch of B transitions (real or imagined); returns the loss."""
        # TODO(phase 5): regress Q(s, a) of the taken actions onto the TD target; one Adam step.
        # HINT: q_values.gather(1, action[:, None]).squeeze(1) picks Q(s, a) per row.
        # HINT: self.td_loss(prediction, target) is the loss: F.mse_loss (a large error pulls
        #       harder: rare failures are not outvoted) or F.smooth_l1_loss (Huber). Leave it in
        #       `loss`; zero_grad, backward and step with self.optimizer.
        # ### BEGIN SOLUTION (phase 5: DQNAgent.train_on_batch)
        target = self.td_target(batch)  # (B,)
        q_values = self.q_network(batch["state"])  # (B, A)
        q_taken = q_values.gather(1, batch["action"][:, None]).squeeze(1)  # (B,)
        loss = self.td_loss(q_taken, target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        # ### END SOLUTION
        self.updates += 1
        if self.updates % self.target_update_interval == 0:
            self.update_target_network()
        return loss.item()

    @torch.no_grad()
    def update_target_network(self) -> None:
        """target <- (1 - tau) target + tau online (tau = 1: an exact copy, lerp's end point)."""
        online = self.q_network.parameters()
        for target, source in zip(self.target_network.parameters(), online, strict=True):
            target.lerp_(source, self.tau)


class LookaheadDQNAgent(DQNAgent):
    """A DQN whose TD targets, while `model` is set (during the imagined updates), look `horizon`
    steps further ahead: model-based value expansion (Feinberg et al. 2018). From s' the model plays
    the target network's greedy actions; the rewards it predicts are added up, discounted and cut
    at a predicted done, in front of your one-step `td_target` of the last imagined step. A fall H
    steps ahead reaches Q(s, a) in one update instead of H + 1. Real updates keep one-step targets.
    """

    def __init__(self, cfg: Config, device: torch.device, generator: torch.Generator) -> None:
        super().__init__(cfg, device, generator)
        self.horizon, self.model = cfg.value_expansion, None  # `model`: set while it imagines

    @torch.no_grad()
    def td_target(self, batch: Batch) -> torch.Tensor:
        if self.model is None:
            return super().td_target(batch)
        path = imagine_rollout(self.model, batch["next_state"], greedy(self.target_network),
                               self.horizon)  # fmt: skip
        last = {"reward": path.rewards[:, -1], "next_state": path.next_states[:, -1],
                "terminated": path.dones[:, -1]}  # fmt: skip
        value = super().td_target(last)  # (B,) one-step target of the last imagined step
        for t in reversed(range(self.horizon - 1)):  # a done cuts everything after it
            value = path.rewards[:, t] + self.gamma * (~path.dones[:, t]).float() * value
        return batch["reward"] + self.gamma * (~batch["terminated"]).float() * value


def looking_ahead(imagined_updates: Callable[..., int]) -> Callable[..., int]:
    """While they run, a LookaheadDQNAgent's imagined updates look ahead through their model."""

    @functools.wraps(imagined_updates)
    def run(agent: DQNAgent, model: WorldModel, *args, **kwargs) -> int:
        if not isinstance(agent, LookaheadDQNAgent):
            return imagined_updates(agent, model, *args, **kwargs)
        agent.model = model
        try:
            return imagined_updates(agent, model, *args, **kwargs)
        finally:
            agent.model = None

    return run


# ----------------------------------------------------------------------------- Dyna


@looking_ahead
def _train_on_simulated_data(
    agent: DQNAgent,
    model: WorldModel,
    buffer: ReplayBuffer,
    num_updates: int,
    rollout_length: int,
    batch_size: int,
    epsilon: float,
) -> int:
    """K Q-updates on transitions imagined by `model` (or phase 6's ensemble) from real states.

    Draws enough real start states that every imagined transition is used about once, rolls each
    out `rollout_length` steps with the agent's current epsilon-greedy policy (stopping at
    predicted dones), and trains on the valid imagined transitions in at most `num_updates`
    mini-batches (whose targets `looking_ahead` extends). Returns the imagined transitions used.
    """
    num_starts = math.ceil(num_updates * batch_size / rollout_length)
    # TODO(phase 5): imagine from real start states with the current policy, keep the valid
    # transitions, and make `num_updates` Q-updates on them.
    # HINT: buffer.sample(num_starts, agent.generator)["state"] gives (B, S) real start states;
    #       phase 4's imagine_rollout(model, starts, policy, rollout_length) with the policy
    #       `lambda s: agent.select_action(s, epsilon)` imagines from them.
    # HINT: keep the steps where rollout.valid & trusted_steps(model, rollout) (trusted_steps only
    #       cuts for phase 6's ensembles); the model's done is the "terminated" of an imagined
    #       transition (the TD target must stop there).
    # HINT: count = the valid transitions; shuffle with torch.randperm(count, generator=agent.
    #       generator), split with .chunk(num_updates): at most that many pieces, maybe fewer.
    # ### BEGIN SOLUTION (phase 5: _train_on_simulated_data)
    starts = buffer.sample(num_starts, agent.generator)["state"]  # (B, S) real states
    rollout = imagine_rollout(
        model, starts, lambda s: agent.select_action(s, epsilon), rollout_length
    )
    valid = rollout.valid & trusted_steps(model, rollout)  # (B, k)
    imagined = {
        "state": rollout.states[valid],
        "action": rollout.actions[valid],
        "reward": rollout.rewards[valid],
        "next_state": rollout.next_states[valid],
        "terminated": rollout.dones[valid],  # the model's done: a termination, never truncation
    }
    count = len(imagined["action"])
    if count == 0:  # every dream was cut at its first step: nothing to learn from
        return 0
    order = torch.randperm(count, generator=agent.generator).to(imagined["action"].device)
    shuffled = {name: values[order].chunk(num_updates) for name, values in imagined.items()}
    for i in range(len(shuffled["action"])):  # chunk gives fewer pieces if count < num_updates
        agent.train_on_batch({name: pieces[i] for name, pieces in shuffled.items()})
    # ### END SOLUTION
    return count


def linear_epsilon(cfg: Config, step: int) -> float:
    fraction = min(step / cfg.exploration_steps, 1.0)
    return cfg.epsilon_start + fraction * (cfg.epsilon_end - cfg.epsilon_start)


def train_dyna_agent(cfg: Config, seed: int, probe: Probe | None = None) -> dict:
    """One run of Dyna-DQN with K = cfg.planning_steps (K = 0: plain DQN) on one seed.

    `probe` (phase 6, app/runs.py) measures the model at every evaluation, its dicts returned as
    "probes". Returns the run's record (app/runs.py): its evaluation curve and figures.
    """
    configure_threads()
    device = resolve_device(cfg.device)
    generator = seed_torch(seed)
    lookahead = cfg.planning_steps > 0 and cfg.value_expansion > 0
    agent = (LookaheadDQNAgent if lookahead else DQNAgent)(cfg, device, generator)
    buffer = ReplayBuffer(min(cfg.buffer_size, cfg.budget.max_steps), device)
    model, fitter = None, None  # plain DQN (K = 0) has no model
    if cfg.planning_steps > 0:  # a fresh model (or phase 6's ensemble), or phase 3's checkpoint
        model = (load_world_model(CHECKPOINT_PATH, device).train() if cfg.warm_start
                 else new_world_model(cfg.model_hidden_size, cfg.ensemble).to(device))
        fitter = ModelFitter(model, cfg.model_initial_epochs, cfg.model_sample, cfg.refit_model,
                             generator, fitted=cfg.warm_start)
    screen = make_screen(
        cfg.screen, agent.q_network, cfg.planning_steps, cfg.learning_starts, generator
    )
    evaluations = Evaluations(cfg.budget, seed, f"K={cfg.planning_steps} seed {seed}", probe)

    env = gym.make(ENV_ID)
    state, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    step, episode, imagined_total = 0, 0, 0
    while evaluations.running(step):
        # -- act in the real environment
        epsilon = linear_epsilon(cfg, step)
        if step < cfg.learning_starts:
            action = int(env.action_space.sample())
        else:
            state_t = torch.as_tensor(state, device=device)[None]
            action = int(agent.select_action(state_t, epsilon, screen.acting_network).item())
        next_state, reward, terminated, truncated, _ = env.step(action)
        buffer.add(state, action, reward, next_state, terminated, episode)
        step += 1
        if terminated or truncated:  # either ends the episode; only `terminated` cuts TD targets
            screen.after_episode(terminated)
            state, _ = env.reset()
            episode += 1
        else:
            state = next_state

        if step >= cfg.learning_starts:
            imagine_now = model is not None and screen.imagines()
            # TODO(phase 5): the Dyna loop for one real step: real Q-updates from the replay
            # buffer, a world-model refit every `cfg.model_train_interval` steps, and K imagined
            # updates when `imagine_now`.
            # HINT: cfg.real_updates times agent.train_on_batch(buffer.sample(cfg.batch_size,
            #       generator, cfg.terminal_samples)).
            # HINT: with a model (`model is not None`), fitter.refit(buffer) when
            #       (step - cfg.learning_starts) % cfg.model_train_interval == 0: the first refit,
            #       at step == cfg.learning_starts, also fits the model's normalisation.
            # HINT: imagined_total += _train_on_simulated_data(agent, model, buffer,
            #       cfg.planning_steps, cfg.rollout_length, cfg.batch_size, epsilon), after the
            #       refit (the model must be fitted before it imagines).
            # ### BEGIN SOLUTION (phase 5: train_dyna_agent)
            for _ in range(cfg.real_updates):  # learn from real experience
                batch = buffer.sample(cfg.batch_size, generator, cfg.terminal_samples)
                agent.train_on_batch(batch)
            # keep the world model up to date with the agent's own data
            if model is not None and (step - cfg.learning_starts) % cfg.model_train_interval == 0:
                fitter.refit(buffer)
            if imagine_now:  # learn from imagined experience
                imagined_total += _train_on_simulated_data(
                    agent, model, buffer, cfg.planning_steps, cfg.rollout_length,
                    cfg.batch_size, epsilon,
                )  # fmt: skip
            # ### END SOLUTION
            screen.after_step(step, model, buffer)

        if evaluations.due(step):  # a probe may look at the agent, model and buffer, not change
            fitted = model if fitter is not None and fitter.fitted else None
            evaluations.evaluate(step, screen.acting_network, device, config=cfg, agent=agent,
                                 model=fitted, buffer=buffer)  # fmt: skip
    env.close()
    return evaluations.record(
        planning_steps=cfg.planning_steps,
        updates=agent.updates,
        imagined_transitions=imagined_total,
        q_weights={k: v.cpu() for k, v in screen.acting_network.state_dict().items()},  # evaluated
        **screen.record(),
    )


# ----------------------------------------------------------------------------- main


def _train(job: tuple[Config, int]) -> dict:
    return train_dyna_agent(*job)


def main(cfg: Config) -> dict:
    require_writable(cfg.plot, cfg.results, cfg.q_checkpoint)  # fail fast: before the runs
    resolve_device(cfg.device)
    if cfg.warm_start:
        load_world_model(CHECKPOINT_PATH)  # fail fast, before any run starts
    dyna_k, H = max(cfg.planning_steps, 1), cfg.value_expansion
    arms_cfg = {"dqn (K=0)": replace(cfg, **MODEL_FREE),
                f"dyna (K={dyna_k}, k={cfg.rollout_length}{f', H={H}' * bool(H)})":
                    replace(cfg, planning_steps=dyna_k)}  # fmt: skip
    jobs = [(arm_cfg, seed) for arm_cfg in arms_cfg.values() for seed in cfg.seeds]
    note = "the defaults take about 1.5 minutes on a 2-core laptop"
    runs = iter(run_all(_train, jobs, cfg.workers, lambda job: job[0].planning_steps, note=note))
    arms = {name: [next(runs) for _ in cfg.seeds] for name in arms_cfg}

    meta = run_metadata(cfg)
    weights = [run.pop("q_weights") for arm_runs in arms.values() for run in arm_runs]
    save_q_network(cfg.q_checkpoint, weights[len(cfg.seeds)], cfg.hidden_size, meta)  # Dyna's
    summary = {name: aggregate(arm_runs) for name, arm_runs in arms.items()}
    save_json(cfg.results, {"arms": summary, "runs": arms, **meta})
    plot_learning_curves(arms, cfg.plot, caption(cfg, dyna_k), meta=meta)
    print(format_table(summary))
    dqn, dyna = (f"{a['median_steps']:,.0f}" if a["median_steps"] else "not solved"
                 for a in summary.values())  # fmt: skip
    headline = f"median steps to solve: DQN {dqn}, Dyna {dyna}"
    print(f"{headline}\nWrote {cfg.plot}, {cfg.results} and {cfg.q_checkpoint}")
    return {"arms": summary, "headline": headline}


def caption(cfg: Config, dyna_k: int) -> str:
    """The settings of a DQN vs Dyna comparison, in words."""
    target = f"target network moved by tau {cfg.tau:g} every {cfg.target_update_interval} updates"
    lookahead = f", TD targets {cfg.value_expansion} steps further on" * bool(cfg.value_expansion)
    return (
        f"Seeds {', '.join(map(str, cfg.seeds))}. Both arms: Q-net {cfg.hidden_size}x2, lr "
        f"{cfg.lr:g}, batch {cfg.batch_size} ({cfg.terminal_samples} of them real terminations), "
        f"{cfg.q_loss} loss, {target}, epsilon {cfg.epsilon_start:g}->{cfg.epsilon_end:g} over "
        f"{cfg.exploration_steps:,} steps, {cfg.learning_starts} random warm-up steps. Dyna: "
        f"{'Double DQN, ' * cfg.double_q}world model refit every {cfg.model_train_interval} steps "
        f"on its buffer{' (warm-started)' * cfg.warm_start}, K={dyna_k} imagined updates per real "
        f"step from {cfg.rollout_length}-step rollouts{lookahead}{cfg.screen.describe()}."
    )  # fmt: skip


if __name__ == "__main__":
    cli(main, Config)
