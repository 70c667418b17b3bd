"""Phase 5 contract: TD targets, epsilon-greedy, the imagined-data path, the Dyna loop.

The tests marked `gap(...)` grade the practice gaps (`practice check 5`): hand-computed targets and
losses, exact SGD steps, a stand-in world model whose imagined episodes end where the test says,
and spies on the loop that count refits, updates and imagined transitions.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from app import agent, train_model
from app.agent import Config, DQNAgent, _train_on_simulated_data
from app.common import with_settings
from app.replay import ReplayBuffer
from tests.grading import expect, expect_close, expect_equal
from tests.test_plan_with_model import CountingModel

GAMMA = 0.9
SELECT, TARGET, UPDATE = "DQNAgent.select_action", "DQNAgent.td_target", "DQNAgent.train_on_batch"
IMAGINE, LOOP = "_train_on_simulated_data", "train_dyna_agent"


def make_agent(kind: type[DQNAgent] = DQNAgent, **overrides) -> DQNAgent:
    # the classic max target unless a test asks for Double DQN (the default since the twentieth
    # round): a constant target network then gives a target known by hand
    settings = dict(gamma=GAMMA, hidden_size=16, double_q=False) | overrides
    cfg = with_settings(Config(), **settings)
    return kind(cfg, torch.device("cpu"), torch.Generator().manual_seed(0))


def tiny_run(**overrides) -> Config:
    """A run of a few hundred steps with small networks: seconds, not minutes. Settings by their
    command-line names (`max_steps`, not `budget.max_steps`)."""
    small = dict(
        eval_episodes=2,
        hidden_size=16,
        model_initial_epochs=2,
        model_train_interval=100,
        min_steps=300,
        max_steps=300,
    )
    return with_settings(Config(), **(small | overrides))


def constant_q(network: torch.nn.Sequential, values: list[float]) -> None:
    """Make `network` output `values` for every state."""
    with torch.no_grad():
        last = network[-1]
        last.weight.zero_()
        last.bias.copy_(torch.tensor(values))


def random_batch(n: int, terminated: bool) -> dict[str, torch.Tensor]:
    """n transitions with random states and actions, reward 1, all ending or none."""
    return {
        "state": torch.randn(n, 4),
        "action": torch.randint(2, (n,)),
        "reward": torch.ones(n),
        "next_state": torch.randn(n, 4),
        "terminated": torch.full((n,), terminated),
    }


@pytest.mark.gap(TARGET)
def test_td_target_terminated_vs_truncated() -> None:
    dqn = make_agent()
    constant_q(dqn.target_network, [1.0, 2.0])  # max_a' Q_target(s', a') = 2
    batch = {
        "state": torch.zeros(3, 4),
        "action": torch.tensor([0, 1, 0]),
        "reward": torch.tensor([1.0, 1.0, 0.5]),
        "next_state": torch.zeros(3, 4),
        # row 0: the pole fell; row 1: the 500-step limit (stored as not terminated); row 2: mid-run
        "terminated": torch.tensor([True, False, False]),
    }
    expected = [1.0, 1.0 + GAMMA * 2.0, 0.5 + GAMMA * 2.0]
    np.testing.assert_allclose(dqn.td_target(batch).numpy(), expected, rtol=1e-6)


@pytest.mark.gap(TARGET)
def test_td_target_uses_target_network_not_online() -> None:
    dqn = make_agent()
    constant_q(dqn.target_network, [3.0, 0.0])
    constant_q(dqn.q_network, [100.0, 100.0])
    batch = {
        "state": torch.zeros(1, 4),
        "action": torch.tensor([0]),
        "reward": torch.zeros(1),
        "next_state": torch.zeros(1, 4),
        "terminated": torch.tensor([False]),
    }
    assert dqn.td_target(batch).item() == pytest.approx(GAMMA * 3.0)


@pytest.mark.gap(TARGET)
@pytest.mark.parametrize(("double_q", "expected"), [(False, 3.0), (True, 1.0)])
def test_double_q_lets_the_online_network_pick(double_q: bool, expected: float) -> None:
    dqn = make_agent(double_q=double_q)
    constant_q(dqn.target_network, [3.0, 1.0])  # the target network prefers action 0
    constant_q(dqn.q_network, [0.0, 5.0])  # the online network prefers action 1
    batch = {
        "state": torch.zeros(2, 4),
        "action": torch.tensor([0, 1]),
        "reward": torch.ones(2),
        "next_state": torch.zeros(2, 4),
        "terminated": torch.tensor([False, True]),
    }
    np.testing.assert_allclose(dqn.td_target(batch).numpy(), [1.0 + GAMMA * expected, 1.0])


@pytest.mark.gap(TARGET, UPDATE)
def test_train_on_batch_moves_q_towards_target() -> None:
    dqn = make_agent(lr=1e-2, target_update_interval=10_000)
    batch = random_batch(32, terminated=True)  # target is exactly the reward, 1
    for _ in range(200):
        dqn.train_on_batch(batch)
    q_taken = dqn.q_network(batch["state"]).gather(1, batch["action"][:, None]).squeeze(1)
    np.testing.assert_allclose(q_taken.detach().numpy(), 1.0, atol=0.05)
    assert dqn.updates == 200


@pytest.mark.gap(TARGET, UPDATE)
@pytest.mark.parametrize(("q_loss", "expected"), [("mse", 50.0), ("huber", 4.75)])
def test_train_on_batch_loss_by_hand(q_loss: str, expected: float) -> None:
    dqn = make_agent(q_loss=q_loss)
    constant_q(dqn.q_network, [1.0, 2.0])
    batch = {  # both end, so the targets are the rewards: TD errors 10 and 0
        "state": torch.zeros(2, 4),
        "action": torch.tensor([0, 1]),
        "reward": torch.tensor([11.0, 2.0]),
        "next_state": torch.zeros(2, 4),
        "terminated": torch.tensor([True, True]),
    }
    # mse: (10^2 + 0^2) / 2. huber: (10 - 0.5 + 0) / 2, linear past an error of 1, so the large
    # error of a terminal transition pulls no harder than an error of 1 would
    assert dqn.train_on_batch(batch) == pytest.approx(expected)


@pytest.mark.gap(UPDATE)
def test_target_network_copied_every_interval() -> None:
    dqn = make_agent(target_update_interval=3, tau=1.0)
    batch = random_batch(8, terminated=False)
    for update in range(1, 7):
        dqn.train_on_batch(batch)
        same = all(
            torch.equal(a, b)
            for a, b in zip(
                dqn.q_network.state_dict().values(),
                dqn.target_network.state_dict().values(),
                strict=True,
            )
        )
        assert same == (update % 3 == 0), update


@pytest.mark.gap(UPDATE)
def test_polyak_target_moves_a_tau_fraction_of_the_way() -> None:
    dqn = make_agent(target_update_interval=1, tau=0.25)
    constant_q(dqn.target_network, [0.0, 0.0])
    before = [p.clone() for p in dqn.target_network.parameters()]
    dqn.train_on_batch(random_batch(8, terminated=False))
    for old, new, online in zip(
        before, dqn.target_network.parameters(), dqn.q_network.parameters(), strict=True
    ):
        torch.testing.assert_close(new, 0.75 * old + 0.25 * online)


@pytest.mark.gap(UPDATE)
def test_train_on_batch_is_one_gradient_step_on_the_taken_actions() -> None:
    """With plain SGD, two updates must equal two hand-made steps: each on the squared error of
    Q(s, a) for the *taken* action a, with fresh gradients each time."""
    dqn = make_agent(target_update_interval=10_000)
    constant_q(dqn.target_network, [1.0, 3.0])  # max Q_target(s', .) = 3
    dqn.optimizer = torch.optim.SGD(dqn.q_network.parameters(), lr=0.05)
    reference = copy.deepcopy(dqn.q_network)
    batches = [random_batch(6, terminated=False), random_batch(4, terminated=False)]
    for batch in batches:
        target = batch["reward"] + GAMMA * 3.0
        q_taken = reference(batch["state"]).gather(1, batch["action"][:, None]).squeeze(1)
        loss = ((q_taken - target) ** 2).mean()
        reference.zero_grad()
        loss.backward()
        with torch.no_grad():
            for weight in reference.parameters():
                weight -= 0.05 * weight.grad
        got = dqn.train_on_batch(batch)
        expect_close(got, loss.item(), "the returned loss (squared TD error of the taken actions)")
    for (name, got), want in zip(
        dqn.q_network.named_parameters(), reference.parameters(), strict=True
    ):
        expect_close(got, want, f"Q-network weight {name} after 2 SGD updates", rtol=1e-5)


@pytest.mark.gap(SELECT)
@pytest.mark.parametrize("epsilon", [0.0, 0.3, 1.0])
def test_epsilon_greedy_distribution(epsilon: float) -> None:
    dqn = make_agent()
    constant_q(dqn.q_network, [0.0, 1.0])  # action 1 is greedy everywhere
    actions = dqn.select_action(torch.zeros(40_000, 4), epsilon)
    share_greedy = (actions == 1).float().mean().item()
    assert share_greedy == pytest.approx(1 - epsilon + epsilon / 2, abs=0.01)


@pytest.mark.gap(SELECT)
def test_select_action_follows_q_per_state() -> None:
    dqn = make_agent()
    dqn.q_network = torch.nn.Linear(4, 2)  # Q(s, left) = -x, Q(s, right) = x
    with torch.no_grad():
        dqn.q_network.weight.zero_()
        dqn.q_network.bias.zero_()
        dqn.q_network.weight[:, 0] = torch.tensor([-1.0, 1.0])
    states = torch.tensor([[1.0, 0, 0, 0], [-1.0, 0, 0, 0], [0.5, 3, 3, 3]])
    assert dqn.select_action(states, 0.0).tolist() == [1, 0, 1]


@pytest.mark.gap(SELECT)
def test_select_action_uses_the_given_network() -> None:
    """With `network`, the greedy action is that network's (the learner's by default)."""
    dqn = make_agent()
    constant_q(dqn.q_network, [1.0, 0.0])  # the learner pushes left
    other = agent.q_network(16)
    constant_q(other, [0.0, 1.0])  # the other network pushes right
    expect_equal(
        dqn.select_action(torch.zeros(5, 4), 0.0, other).tolist(),
        [1] * 5,
        "greedy actions of the network passed in",
    )
    expect_equal(
        dqn.select_action(torch.zeros(5, 4), 0.0).tolist(),
        [0] * 5,
        "greedy actions of the learner (no network passed)",
    )


@pytest.mark.gap(SELECT)
def test_select_action_draws_only_from_the_agent_generator() -> None:
    """A seed fixes the run: the coins and random actions come from `self.generator`, not from
    torch's global generator."""
    first, second = make_agent(), make_agent()  # generators seeded alike
    constant_q(second.q_network, [0.0, 1.0])
    constant_q(first.q_network, [0.0, 1.0])
    a = first.select_action(torch.zeros(200, 4), 0.5)
    torch.manual_seed(12345)  # moving the global generator must change nothing
    b = second.select_action(torch.zeros(200, 4), 0.5)
    expect_equal(a, b, "actions of two agents whose generators have the same seed")


def filled_buffer(size: int = 50, capacity: int = 64) -> ReplayBuffer:
    buffer = ReplayBuffer(capacity, torch.device("cpu"))
    for i in range(size):
        state = np.full(4, -10.0 + i / 100, np.float32)
        buffer.add(state, i % 2, 1.0, state + 1, False, 0)
    return buffer


class SpyModel(CountingModel):
    """The counting simulator, paying reward 7 so imagined data are recognisable."""

    calls = 0

    def step(self, state, action):
        SpyModel.calls += 1
        next_state, _, done = super().step(state, action)
        return next_state, torch.full((len(state),), 7.0), done


@pytest.mark.gap(IMAGINE)
def test_simulated_data_uses_model_and_respects_k() -> None:
    dqn = make_agent()
    batches = []
    dqn.train_on_batch = batches.append  # record instead of learning
    SpyModel.calls = 0
    used = _train_on_simulated_data(
        dqn, SpyModel(), filled_buffer(), num_updates=4, rollout_length=3, batch_size=6, epsilon=0.5
    )
    assert len(batches) == 4  # exactly K updates
    assert SpyModel.calls == 3  # one batched model step per rollout step
    assert used == 4 * 6  # every imagined transition used once: 8 starts x 3 steps
    buffer_states = set((-10.0 + np.arange(50) / 100).round(4).tolist())
    for batch in batches:
        expect(bool((batch["reward"] == 7.0).all()), "imagined rewards must be the model's (7)")
        moved = batch["next_state"][:, 0] - batch["state"][:, 0]
        expect_close(moved, 1.0 + batch["action"].float(), "imagined x' - x (the model's physics)")
        expect(not batch["terminated"].any(), "no imagined episode ended here")
    first_states = torch.cat([b["state"][:, 0] for b in batches])
    starts = {round(x, 4) for x in first_states.tolist()} & buffer_states
    expect(
        len(starts) >= 6,
        "imagined rollouts must start from the buffer's *states* "
        f"(x in -10.00 .. -9.51); found starts {sorted(starts)[:8]}",
    )


def start_buffer(xs: list[float]) -> ReplayBuffer:
    """A buffer whose states have cart position x in `xs` (the stand-in model ends an imagined
    episode once x reaches 3; each step adds 1 + action)."""
    buffer = ReplayBuffer(len(xs), torch.device("cpu"))
    for x in xs:
        state = np.array([x, 0, 0, 0], np.float32)
        buffer.add(state, 0, 1.0, state, False, 0)
    return buffer


@pytest.mark.gap(IMAGINE)
def test_imagined_episodes_end_where_the_model_says() -> None:
    """From x = 1 or 2 the stand-in model's episodes end within 2 steps: the step where the model
    says done is an imagined *terminal* transition, and nothing after it is learned from."""
    dqn = make_agent()
    constant_q(dqn.q_network, [1.0, 0.0])  # greedy: push left (+1 per step)
    batches = []
    dqn.train_on_batch = batches.append
    used = _train_on_simulated_data(
        dqn,
        CountingModel(),
        start_buffer([1.0, 2.0] * 8),
        num_updates=2,
        rollout_length=3,
        batch_size=12,
        epsilon=0.0,
    )
    imagined = {k: torch.cat([b[k] for b in batches]) for k in batches[0]}
    expect(
        bool((imagined["state"][:, 0] < 3).all()),
        "a transition from a state after the imagined episode ended (x >= 3) was learned "
        "from: keep only rollout.valid steps",
    )
    done = imagined["next_state"][:, 0] >= 3
    expect_equal(
        imagined["terminated"],
        done,
        "terminated of each imagined transition (the "
        "model's done: True where the imagined pole fell)",
    )
    expect_equal(used, len(imagined["state"]), "the returned count of imagined transitions")


@pytest.mark.gap(IMAGINE)
def test_imagined_rollouts_explore_with_epsilon() -> None:
    """The dreams follow the agent's epsilon-greedy policy: with epsilon 1, half the actions are
    the one the Q-network does not prefer."""
    dqn = make_agent()
    constant_q(dqn.q_network, [1.0, 0.0])  # greedy: always 0
    batches = []
    dqn.train_on_batch = batches.append
    _train_on_simulated_data(
        dqn,
        CountingModel(),
        filled_buffer(),
        num_updates=20,
        rollout_length=1,
        batch_size=20,
        epsilon=1.0,
    )
    share = torch.cat([b["action"] for b in batches]).float().mean().item()
    expect(
        0.35 < share < 0.65,
        f"share of action 1 with epsilon 1: expected about 0.5, got {share:.2f}",
    )


@pytest.mark.gap(IMAGINE)
def test_fewer_imagined_transitions_than_updates() -> None:
    """Every dream ends at its first step (x starts at 2.5), so 3 transitions feed K = 8 updates:
    torch.chunk then gives 3 pieces, one update each."""
    dqn = make_agent()
    batches = []
    dqn.train_on_batch = batches.append
    used = _train_on_simulated_data(
        dqn,
        CountingModel(),
        start_buffer([2.5] * 4),
        num_updates=8,
        rollout_length=3,
        batch_size=1,
        epsilon=0.0,
    )
    expect_equal(used, 3, "imagined transitions (3 starts x 1 step)")
    expect_equal(len(batches), 3, "Q-updates when only 3 transitions were imagined")


@pytest.mark.gap(LOOP)
def test_k_zero_never_touches_the_model(monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("K = 0 must not imagine anything")

    monkeypatch.setattr(agent, "_train_on_simulated_data", fail)
    cfg = tiny_run(planning_steps=0, learning_starts=100, eval_interval=150)
    run = agent.train_dyna_agent(cfg, seed=0)
    assert run["imagined_transitions"] == 0
    assert run["updates"] == 300 - 100 + 1  # one real update per step from learning_starts on
    assert run["eval_steps"] == [150, 300]


@pytest.mark.gap(IMAGINE, LOOP)
def test_dyna_run_imagines_k_updates_per_step() -> None:
    cfg = tiny_run(
        planning_steps=2,
        rollout_length=2,
        learning_starts=100,
        eval_interval=300,
        model_hidden_size=32,
    )
    run = agent.train_dyna_agent(cfg, seed=0)
    steps_learning = 300 - 100 + 1
    assert run["updates"] == steps_learning * (1 + 2)
    assert run["imagined_transitions"] > 0


@pytest.mark.gap(SELECT, LOOP)
def test_same_seed_same_run() -> None:
    cfg = tiny_run(
        planning_steps=1,
        min_steps=200,
        max_steps=200,
        learning_starts=50,
        eval_interval=100,
        model_hidden_size=16,
    )
    a, b = agent.train_dyna_agent(cfg, 3), agent.train_dyna_agent(cfg, 3)
    assert a["eval_returns"] == b["eval_returns"]
    for name, weights in a["q_weights"].items():
        assert torch.equal(weights, b["q_weights"][name])


@pytest.mark.gap(LOOP)
def test_model_is_refitted_every_interval_and_before_it_imagines(monkeypatch) -> None:
    """Refits at steps 100, 200 and 300 (learning_starts 100, model_train_interval 100), and at
    step 100 the refit comes first: the model must be fitted before it imagines."""
    events = []
    real_refit, real_imagine = train_model.ModelFitter.refit, agent._train_on_simulated_data

    def refit(self, buffer):
        events.append(("refit", buffer.size))
        return real_refit(self, buffer)

    def imagine(agent_, model, buffer, *args):
        events.append(("imagine", buffer.size))
        return real_imagine(agent_, model, buffer, *args)

    monkeypatch.setattr(train_model.ModelFitter, "refit", refit)
    monkeypatch.setattr(agent, "_train_on_simulated_data", imagine)
    cfg = tiny_run(planning_steps=1, learning_starts=100, eval_interval=300, model_hidden_size=16)
    agent.train_dyna_agent(cfg, seed=0)
    refits = [step for kind, step in events if kind == "refit"]
    expect_equal(refits, [100, 200, 300], "the steps at which the world model was refitted")
    expect_equal(events[0], ("refit", 100), "the first thing the loop does with the model")
    imagined = [step for kind, step in events if kind == "imagine"]
    expect_equal(len(imagined), 201, "steps with imagined updates (every step from 100 to 300)")


@pytest.mark.gap(LOOP)
def test_every_real_step_makes_real_updates_with_terminal_samples(monkeypatch) -> None:
    """cfg.real_updates Q-updates per real step, each on a batch of cfg.batch_size real
    transitions, cfg.terminal_samples of them drawn from real terminations."""
    asked = []
    real_sample = ReplayBuffer.sample

    def sample(self, batch_size, generator, terminal=0):
        asked.append((batch_size, terminal))
        return real_sample(self, batch_size, generator, terminal)

    monkeypatch.setattr(ReplayBuffer, "sample", sample)
    cfg = tiny_run(
        planning_steps=0,
        real_updates=2,
        learning_starts=100,
        eval_interval=300,
        batch_size=24,
        terminal_samples=5,
    )
    run = agent.train_dyna_agent(cfg, seed=0)
    expect_equal(run["updates"], 2 * (300 - 100 + 1), "Q-updates in 201 learning steps")
    expect_equal(sorted(set(asked)), [(24, 5)], "real batches asked for: (size, terminal rows)")


@pytest.mark.gap(LOOP)
def test_imagined_total_counts_every_imagined_transition(monkeypatch) -> None:
    counts = []
    real_imagine = agent._train_on_simulated_data
    monkeypatch.setattr(
        agent, "_train_on_simulated_data", lambda *a: counts.append(real_imagine(*a)) or counts[-1]
    )
    cfg = tiny_run(planning_steps=1, learning_starts=100, eval_interval=300, model_hidden_size=16)
    run = agent.train_dyna_agent(cfg, seed=0)
    expect(len(counts) > 100 and sum(counts) > 0, f"imagined updates ran {len(counts)} times")
    expect_equal(
        run["imagined_transitions"],
        sum(counts),
        "the run's imagined_transitions (the sum of what every call returned)",
    )


def test_replay_buffer_wraps_and_keeps_order() -> None:
    buffer = filled_buffer(size=70, capacity=64)
    assert buffer.size == 64
    stored = buffer.as_batch()["state"][:, 0].numpy()  # rows 64-69 overwrote the oldest six
    expected = -10.0 + np.r_[np.arange(64, 70), np.arange(6, 64)] / 100
    np.testing.assert_allclose(stored, expected, rtol=1e-6)
    sample = buffer.sample(16, torch.Generator().manual_seed(0))
    assert sample["state"].shape == (16, 4) and sample["action"].dtype == torch.long


def buffer_of_episodes(lengths: list[int], fell: bool = True) -> ReplayBuffer:
    """Episodes of the given lengths, back to back; each ends terminated when `fell`. State x is
    the row number, so rows can be told apart."""
    buffer = ReplayBuffer(sum(lengths), torch.device("cpu"))
    row = 0
    for episode, length in enumerate(lengths):
        for t in range(length):
            state = np.array([row, 0, 0, 0], np.float32)
            last = t == length - 1
            buffer.add(state, 0, 1.0, state, fell and last, episode)
            row += 1
    return buffer


def test_terminal_samples_come_first_and_from_terminations() -> None:
    buffer = buffer_of_episodes([30, 50, 20])  # terminations at rows 29, 79, 99
    gen = torch.Generator().manual_seed(0)
    batch = buffer.sample(64, gen, terminal=16)
    assert batch["terminated"][:16].all()
    assert set(batch["state"][:16, 0].tolist()) <= {29.0, 79.0, 99.0}
    assert batch["terminated"][16:].float().mean() < 0.5  # the others: uniform (3 rows in 100)
    # No termination yet (a run that has never failed): uniform, no error.
    never = buffer_of_episodes([40], fell=False)
    assert not never.sample(64, gen, terminal=16)["terminated"].any()


def test_terminal_rows_follow_additions_and_overwrites() -> None:
    buffer = buffer_of_episodes([3, 3])  # capacity 6, terminations at rows 2 and 5
    assert buffer.terminal_rows().tolist() == [2, 5]
    state = np.zeros(4, np.float32)
    for _ in range(3):  # the ring overwrites rows 0-2, the last of them not a termination
        buffer.add(state, 0, 1.0, state, False, 2)
    assert buffer.terminal_rows().tolist() == [5]


@pytest.mark.gap(TARGET)
@pytest.mark.parametrize("imagining", [True, False])
def test_lookahead_targets_by_hand(imagining: bool) -> None:
    """Value expansion with H = 2 through the counting simulator (x grows by 1 + action, reward
    1, done once x reaches 3) and a target network that prefers action 1 (Q = [0, 5])."""
    dqn = make_agent(agent.LookaheadDQNAgent, value_expansion=2)
    dqn.model = CountingModel() if imagining else None
    constant_q(dqn.target_network, [0.0, 5.0])
    batch = random_batch(4, terminated=False)
    batch["next_state"][:, 0] = torch.tensor([-10.0, 0.0, 2.0, 0.0])
    batch["terminated"][3] = True
    g = GAMMA
    expected = [
        1 + g * (1 + g * (1 + g * 5)),  # x' = -10 -> -8 -> -6: two steps, then Q = 5
        1 + g * (1 + g * 1),  # 0 -> 2 -> 4: the second imagined step falls
        1 + g * 1,  # 2 -> 4: the first imagined step falls, nothing after it counts
        1,  # a real termination: nothing after it either
    ]
    if not imagining:  # real updates: the one-step target
        expected = [1 + g * 5, 1 + g * 5, 1 + g * 5, 1]
    expect_close(dqn.td_target(batch), torch.tensor(expected), "expanded TD targets")


@pytest.mark.gap(IMAGINE)
def test_only_the_imagined_updates_look_ahead() -> None:
    dqn = make_agent(agent.LookaheadDQNAgent, value_expansion=2)
    seen = []
    dqn.train_on_batch = lambda batch: seen.append(dqn.model)  # record instead of learning
    model = SpyModel()
    used = _train_on_simulated_data(
        dqn, model, filled_buffer(), num_updates=4, rollout_length=1, batch_size=6, epsilon=0.5
    )
    assert used == 24 and seen == [model] * 4  # every imagined update looks through the model
    assert dqn.model is None  # and nothing else does


def test_lookahead_only_in_dyna_runs(monkeypatch) -> None:
    """In a run, the expanded targets are exactly those of the imagined updates."""
    calls = {"expanded": 0, "one-step": 0}
    original = agent.LookaheadDQNAgent.td_target

    def count(self, batch):
        calls["one-step" if self.model is None else "expanded"] += 1
        return original(self, batch)

    monkeypatch.setattr(agent.LookaheadDQNAgent, "td_target", count)
    cfg = tiny_run(planning_steps=2, value_expansion=2, learning_starts=100, eval_interval=300,
                   model_hidden_size=32)  # fmt: skip
    run = agent.train_dyna_agent(cfg, seed=0)
    real = 300 - 100 + 1
    assert calls == {"one-step": real, "expanded": run["updates"] - real}
    assert run["updates"] > real
    for planning_steps, expansion in [(0, 2), (2, 0)]:  # no model, or H = 0: plain one-step DQN
        calls.update({"expanded": 0, "one-step": 0})
        cfg = tiny_run(planning_steps=planning_steps, value_expansion=expansion, max_steps=150,
                       min_steps=150, learning_starts=100, eval_interval=150)  # fmt: skip
        agent.train_dyna_agent(cfg, seed=0)
        assert calls == {"expanded": 0, "one-step": 0}
