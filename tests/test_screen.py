"""The model screen (app/screen.py): which network acts, when the model rests, what it costs."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch

from app import agent, screen
from app.agent import DQNAgent
from app.plan_with_model import imagine_rollout
from app.screen import ModelScreen, NoScreen, ScreenConfig, make_screen
from tests.grading import expect
from tests.test_agent import buffer_of_episodes, constant_q, make_agent, tiny_run
from tests.test_plan_with_model import CountingModel


class FallsOnPush(CountingModel):
    """An imagined pole that falls as soon as the agent pushes right (action 1)."""

    def step(self, state, action):
        return state.clone(), torch.ones(len(state)), (action == 1).float()


def a_screen(learner: torch.nn.Module, horizon: int = 20, starts: int = 8) -> ModelScreen:
    cfg = ScreenConfig(screen_interval=100, screen_horizon=horizon, screen_starts=starts)
    return ModelScreen(learner, cfg, learning_starts=0, generator=torch.Generator().manual_seed(0))


def test_screen_takes_only_a_learner_the_model_rates_at_least_as_good() -> None:
    q_of = {"left": [2.0, 1.0], "right": [1.0, 2.0]}  # greedy action 0 or 1 in every state
    buffer = buffer_of_episodes([10, 10])
    # Pushing left lasts the whole 20-step horizon in imagination, pushing right 1 step.
    for learner, acting, accepted in (("left", "right", True), ("right", "left", False)):
        dqn = make_agent()
        judge = a_screen(dqn.q_network)
        assert judge.acting_network is not dqn.q_network
        constant_q(dqn.q_network, q_of[learner])
        constant_q(judge.acting_network, q_of[acting])
        assert judge.screen(FallsOnPush(), buffer) is accepted
        kept = learner if accepted else acting
        assert judge.acting_network(torch.zeros(1, 4))[0].tolist() == q_of[kept]
        assert dqn.q_network(torch.zeros(1, 4))[0].tolist() == q_of[learner]  # learner untouched


def test_no_screen_without_a_model_or_when_off() -> None:
    q = torch.nn.Linear(4, 2)
    generator = torch.Generator()
    for cfg, planning in ((ScreenConfig(), 0), (ScreenConfig(screen_interval=0), 10)):
        chosen = make_screen(cfg, q, planning, 500, generator)
        assert type(chosen) is NoScreen and chosen.acting_network is q and chosen.imagines()
    assert isinstance(make_screen(ScreenConfig(), q, 10, 500, generator), ModelScreen)


def test_screens_are_due_every_interval_after_the_warm_up_and_rest_after_a_time_limit() -> None:
    judge = a_screen(torch.nn.Linear(4, 2))
    judge.cfg = ScreenConfig(screen_interval=50)
    judge.learning_starts = 100
    calls = []
    judge.screen = lambda model, buffer: calls.append(1) or True
    for step in range(100, 300):
        judge.after_step(step, model=object(), buffer=None)
    assert len(calls) == 4 and judge.screens == 4 and judge.accepted == 4  # 149, 199, 249, 299
    judge.after_episode(terminated=False)  # the time limit: proven in reality, the model rests
    assert not judge.imagines()
    judge.after_step(349, model=object(), buffer=None)
    assert judge.screens == 4
    judge.after_episode(terminated=True)  # the pole fell: screen and imagine again
    assert judge.imagines()
    judge.after_step(399, model=object(), buffer=None)
    assert judge.screens == 5


def test_screened_dyna_run_acts_and_is_evaluated_with_the_screened_network(monkeypatch) -> None:
    cfg = tiny_run(
        planning_steps=1, learning_starts=100, eval_interval=150, model_hidden_size=16,
        screen_interval=50, screen_horizon=20, screen_starts=4,
    )  # fmt: skip
    screened, acted, evaluated = [], [], []

    def reject(self, model, buffer):  # a screen that never lets the learner through
        screened.append((self.acting_network, self.learner))
        return False

    real_select, real_evaluate = DQNAgent.select_action, agent.Evaluations.evaluate

    def spy_select(self, states, epsilon, network=None):
        if len(states) == 1:  # the real environment's action
            acted.append(network)
        return real_select(self, states, epsilon, network)

    def spy_evaluate(self, step, network, device, **state):
        evaluated.append(network)
        return real_evaluate(self, step, network, device, **state)

    monkeypatch.setattr(ModelScreen, "screen", reject)
    monkeypatch.setattr(DQNAgent, "select_action", spy_select)
    monkeypatch.setattr(agent.Evaluations, "evaluate", spy_evaluate)
    run = agent.train_dyna_agent(cfg, seed=0)
    assert run["screens"] == len(screened) == 4  # at steps 149, 199, 249, 299
    assert run["screens_accepted"] == 0
    acting, learner = screened[0]
    assert acting is not learner
    assert all(net is acting for net in acted) and len(acted) == 300 - 100  # after the warm-up
    assert evaluated == [acting, acting]
    assert agent.train_dyna_agent(with_k(cfg, 0), seed=0)["screens"] == 0


def with_k(cfg, k):
    from app.common import with_settings

    return with_settings(cfg, planning_steps=k)


@pytest.mark.gap("train_dyna_agent")
def test_model_rests_while_the_latest_real_episode_reached_the_time_limit(monkeypatch) -> None:
    """After an episode that reached the time limit, `imagine_now` is False: no imagined
    updates (and no screen) until the next episode that fails."""
    cfg = tiny_run(
        planning_steps=1, min_steps=600, max_steps=600, learning_starts=100, eval_interval=600,
        model_hidden_size=16, screen_interval=10, screen_horizon=5, screen_starts=2,
    )  # fmt: skip
    fell = []  # per finished training episode: did the pole fall (else: the time limit)
    make = gym.make

    def short_training_env(env_id, **kwargs):
        if fell or kwargs:  # evaluation environments, made later: unchanged
            return make(env_id, **kwargs)

        class Recorded(gym.Wrapper):  # episodes of at most 12 steps, some end by the time limit
            def step(self, action):
                out = self.env.step(action)
                if out[2] or out[3]:
                    fell.append(out[2])
                return out

        fell.append(True)  # marks the training environment as made
        return Recorded(make(env_id, max_episode_steps=12))

    screened_after, imagined_after = [], []  # whether the latest episode fell, at each call
    real_imagine = agent._train_on_simulated_data

    def screen_(self, model, buffer):
        screened_after.append(fell[-1])
        return False

    def imagine(*args):
        imagined_after.append(fell[-1])
        return real_imagine(*args)

    monkeypatch.setattr(agent.gym, "make", short_training_env)
    monkeypatch.setattr(ModelScreen, "screen", screen_)
    monkeypatch.setattr(agent, "_train_on_simulated_data", imagine)
    run = agent.train_dyna_agent(cfg, seed=0)
    assert True in fell[1:] and False in fell[1:]  # both kinds of episode end happened
    expect(
        all(imagined_after) and 0 < len(imagined_after) < 500,
        "imagined updates ran right after an episode that reached the time limit: the loop must "
        "imagine only when `imagine_now` is True",
    )
    assert run["screens"] == len(screened_after) and 0 < len(screened_after) < 50  # 50 were due
    assert all(screened_after)  # never right after an episode that reached the time limit


def test_imagined_episode_lengths_match_one_long_rollout() -> None:
    starts = torch.zeros(5, 4)
    starts[:, 0] = torch.tensor([-10.0, -4.0, 0.0, 2.0, -30.0])  # episodes of 13, 7, 3, 1, 33 steps
    push_left = torch.nn.Linear(4, 2)
    with torch.no_grad():
        push_left.weight.zero_()
        push_left.bias.copy_(torch.tensor([1.0, 0.0]))
    lengths = screen.imagined_episode_lengths(CountingModel(), starts, push_left, 20, chunk=4)
    whole = imagine_rollout(CountingModel(), starts, lambda s: push_left(s).argmax(1), 20)
    assert lengths.tolist() == whole.valid.sum(dim=1).tolist() == [13, 7, 3, 1, 20]
    # Asked to reach more than 5 episodes x 20 steps could give, it stops after the first chunk.
    early = screen.imagined_episode_lengths(
        CountingModel(), starts, push_left, 20, give_up_below=101, chunk=4
    )
    assert early.tolist() == [4, 4, 3, 1, 4]


def test_episode_starts() -> None:
    buffer = buffer_of_episodes([3, 2, 4])
    assert screen.episode_starts(buffer.episode[: buffer.size]).tolist() == [0, 3, 5]


def test_episode_starts_once_the_buffer_has_wrapped() -> None:
    from app.replay import ReplayBuffer

    buffer = ReplayBuffer(10, torch.device("cpu"))
    for row in range(14):  # episodes of 4 steps: rows 0-3, 4-7, 8-11, 12-13 (the last unfinished)
        state = torch.tensor([float(row), 0, 0, 0])
        buffer.add(state, 0, 1.0, state, row % 4 == 3, row // 4)
    starts = screen.stored_episode_starts(buffer)
    assert sorted(buffer.state[starts, 0].tolist()) == [8.0, 12.0]  # not the oldest row (4)
