"""Phase 5 contract: TD targets, epsilon-greedy, the imagined-data path, the Dyna loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app import agent
from app.agent import Config, DQNAgent, ReplayBuffer, _train_on_simulated_data
from app.common import with_settings
from tests.test_plan_with_model import CountingModel

GAMMA = 0.9


def make_agent(**overrides) -> DQNAgent:
    cfg = with_settings(Config(), gamma=GAMMA, hidden_size=16, **overrides)
    return DQNAgent(cfg, torch.device("cpu"), torch.Generator().manual_seed(0))


def tiny_run(**overrides) -> Config:
    """A run of a few hundred steps with small networks: seconds, not minutes. Settings by their
    command-line names (`max_steps`, not `budget.max_steps`)."""
    small = dict(
        eval_episodes=2, hidden_size=16, model_initial_epochs=2, model_train_interval=100,
        min_steps=300, max_steps=300,
    )  # fmt: skip
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


def test_train_on_batch_moves_q_towards_target() -> None:
    dqn = make_agent(lr=1e-2, target_update_interval=10_000)
    batch = random_batch(32, terminated=True)  # target is exactly the reward, 1
    for _ in range(200):
        dqn.train_on_batch(batch)
    q_taken = dqn.q_network(batch["state"]).gather(1, batch["action"][:, None]).squeeze(1)
    np.testing.assert_allclose(q_taken.detach().numpy(), 1.0, atol=0.05)
    assert dqn.updates == 200


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


def test_polyak_target_moves_a_tau_fraction_of_the_way() -> None:
    dqn = make_agent(target_update_interval=1, tau=0.25)
    constant_q(dqn.target_network, [0.0, 0.0])
    before = [p.clone() for p in dqn.target_network.parameters()]
    dqn.train_on_batch(random_batch(8, terminated=False))
    for old, new, online in zip(
        before, dqn.target_network.parameters(), dqn.q_network.parameters(), strict=True
    ):
        torch.testing.assert_close(new, 0.75 * old + 0.25 * online)


@pytest.mark.parametrize("epsilon", [0.0, 0.3, 1.0])
def test_epsilon_greedy_distribution(epsilon: float) -> None:
    dqn = make_agent()
    constant_q(dqn.q_network, [0.0, 1.0])  # action 1 is greedy everywhere
    actions = dqn.select_action(torch.zeros(40_000, 4), epsilon)
    share_greedy = (actions == 1).float().mean().item()
    assert share_greedy == pytest.approx(1 - epsilon + epsilon / 2, abs=0.01)


def test_select_action_follows_q_per_state() -> None:
    dqn = make_agent()
    dqn.q_network = torch.nn.Linear(4, 2)  # Q(s, left) = -x, Q(s, right) = x
    with torch.no_grad():
        dqn.q_network.weight.zero_()
        dqn.q_network.bias.zero_()
        dqn.q_network.weight[:, 0] = torch.tensor([-1.0, 1.0])
    states = torch.tensor([[1.0, 0, 0, 0], [-1.0, 0, 0, 0], [0.5, 3, 3, 3]])
    assert dqn.select_action(states, 0.0).tolist() == [1, 0, 1]


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
    for batch in batches:
        assert (batch["reward"] == 7.0).all()  # the model's reward, not the buffer's 1.0
        assert (batch["state"][:, 0] < -3).all()  # near the real states (x <= -9.5), not at 0
        moved = batch["next_state"][:, 0] - batch["state"][:, 0]
        torch.testing.assert_close(moved, 1.0 + batch["action"].float())  # the model's physics
        assert not batch["terminated"].any()


def test_k_zero_never_touches_the_model(monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("K = 0 must not imagine anything")

    monkeypatch.setattr(agent, "_train_on_simulated_data", fail)
    cfg = tiny_run(planning_steps=0, learning_starts=100, eval_interval=150)
    run = agent.train_dyna_agent(cfg, seed=0)
    assert run["imagined_transitions"] == 0
    assert run["updates"] == 300 - 100 + 1  # one real update per step from learning_starts on
    assert run["eval_steps"] == [150, 300]


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
    assert batch["terminated"][16:].float().mean() < 0.5  # the rest: uniform (3 rows in 100)
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
