"""Phase 4 contract: imagined rollouts (shapes, stopping at done) and open-loop accuracy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.plan_with_model import (
    RealTrajectories,
    evaluate_model_accuracy,
    first_crossing,
    imagine_rollout,
)
from app.planning_plots import save_dream_gif
from app.world_model import WorldModel, WorldModelConfig
from tests.grading import expect, expect_close, expect_equal, expect_shape

ROLLOUT, ACCURACY = "imagine_rollout", "evaluate_model_accuracy"


class CountingModel(torch.nn.Module):
    """A stand-in simulator: x grows by 1 (or by 1 + action) each step; done once x reaches 3."""

    config = WorldModelConfig()

    def __init__(self) -> None:
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def step(self, state, action):
        next_state = state.clone()
        next_state[:, 0] += 1 + action
        return next_state, torch.ones(len(state)), (next_state[:, 0] >= 3).float()

    def is_done(self, probability):
        return probability >= 0.5


@pytest.mark.gap(ROLLOUT)
def test_rollout_shapes_with_real_model() -> None:
    model = WorldModel(WorldModelConfig(hidden_size=32))
    policy = lambda states: torch.zeros(len(states), dtype=torch.long)  # noqa: E731
    rollout = imagine_rollout(model, torch.randn(6, 4), policy, horizon=5, stop_at_done=False)
    expect_shape(rollout.states, (6, 5, 4), "rollout.states")
    expect_shape(rollout.next_states, (6, 5, 4), "rollout.next_states")
    expect_shape(rollout.actions, (6, 5), "rollout.actions", torch.long)
    expect_shape(rollout.valid, (6, 5), "rollout.valid", torch.bool)
    for name in ("rewards", "dones"):
        expect_shape(getattr(rollout, name), (6, 5), f"rollout.{name}")
    expect(bool(rollout.valid.all()), "with stop_at_done=False every step must be valid")
    expect_close(rollout.states[:, 1:], rollout.next_states[:, :-1], "state t+1 = next_state t")


@pytest.mark.gap(ROLLOUT)
def test_rollout_stops_each_trajectory_at_done() -> None:
    start = torch.zeros(3, 4)
    start[:, 0] = torch.tensor([0.0, 1.0, 2.0])  # reaches x = 3 after 3, 2 and 1 steps
    policy = lambda states: torch.zeros(len(states), dtype=torch.long)  # noqa: E731
    rollout = imagine_rollout(CountingModel(), start, policy, horizon=5)
    expected_valid = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]]).bool()
    expect_equal(rollout.valid, expected_valid, "valid: every step up to and including the done")
    done_steps = (rollout.dones & rollout.valid).nonzero().tolist()
    expect_equal(done_steps, [[0, 2], [1, 1], [2, 0]], "the (row, step) of each valid done")
    reached = rollout.next_states[:, :, 0][rollout.valid]
    expect_close(reached, [1.0, 2.0, 3.0, 2.0, 3.0, 3.0], "cart position x of the valid steps")


@pytest.mark.gap(ROLLOUT)
def test_rollout_follows_given_actions() -> None:
    """A (B, H) tensor of actions: row b takes actions[b, t] at step t (B = 2, H = 3)."""
    actions = torch.tensor([[1, 0, 1], [0, 0, 1]])
    rollout = imagine_rollout(CountingModel(), torch.full((2, 4), -10.0), actions, horizon=3)
    expect_equal(rollout.actions, actions, "the actions taken")
    expected = torch.tensor([[-8.0, -7.0, -5.0], [-9.0, -8.0, -6.0]])  # x moves by 1 + action
    expect_close(rollout.next_states[:, :, 0], expected, "next cart positions x")


@pytest.mark.gap(ROLLOUT)
def test_rollout_policy_sees_current_state() -> None:
    seen = []

    def policy(states):
        seen.append(states[:, 0].clone())
        return torch.zeros(len(states), dtype=torch.long)

    imagine_rollout(CountingModel(), torch.full((2, 4), -5.0), policy, horizon=3)
    expect_close(torch.stack(seen)[:, 0], [-5.0, -4.0, -3.0], "x the policy saw at steps 0, 1, 2")


def moving_episodes() -> RealTrajectories:
    """Two real episodes whose cart moves 0.5 per step (the stand-in model moves it by 1), far
    from the model's done line; episode 1 ends after reaching s_2."""
    B, H, S = 2, 4, 4
    states = np.zeros((B, H + 1, S), np.float32)
    states[:, :, 0] = -100.0 + 0.5 * np.arange(H + 1)
    alive = np.ones((B, H + 1), bool)
    alive[1, 3:] = False
    states[1, 3:] = states[1, 2]  # padded after the end, as collect_real_trajectories does
    return RealTrajectories(states, np.zeros((B, H), np.int64), alive)


@pytest.mark.gap(ACCURACY)
def test_accuracy_hand_computed() -> None:
    """Column h - 1 of the (B, H) error is step h: the model's s_h against the real s_h. The
    model's x is -100 + h, the real one -100 + 0.5 h: error (0.5 h)^2 / S, NaN once ended."""
    accuracy = evaluate_model_accuracy(CountingModel(), moving_episodes())
    h = np.arange(1, 5)
    expected = np.array([(0.5 * h) ** 2, [0.25, 1.0, np.nan, np.nan]]) / 4
    expect_close(
        accuracy.squared_error, expected,
        "squared_error[b, h-1]: mean over the 4 state variables of (imagined s_h - real s_h)^2, "
        "NaN where the real episode had ended",
    )  # fmt: skip
    summary = accuracy.per_step()
    expect_equal(list(summary["count"]), [2, 2, 1, 1], "episodes counted per step")
    assert first_crossing(summary["step"], summary["mean"], threshold=0.5) == 3
    assert first_crossing(summary["step"], summary["mean"], threshold=100.0) is None
    expect_close(accuracy.imagined_states[0, :, 0], -100.0 + np.arange(5), "imagined x, s_0..s_4")


@pytest.mark.gap(ACCURACY)
def test_accuracy_of_perfect_model_is_zero() -> None:
    """Open-loop replay must continue past a predicted done: a perfect copy gives zero error."""

    class Copy(CountingModel):
        def step(self, state, action):
            return state.clone(), torch.ones(len(state)), torch.ones(len(state))  # always "done"

    states = np.random.default_rng(0).normal(size=(3, 6, 4)).astype(np.float32)
    states[:] = states[:, :1]
    real = RealTrajectories(states, np.zeros((3, 5), np.int64), np.ones((3, 6), bool))
    expect_close(
        evaluate_model_accuracy(Copy(), real).squared_error, np.zeros((3, 5)),
        "the error of a model that is exact but predicts 'done' at every step",
    )  # fmt: skip


def test_dream_gif_is_a_small_animation(tmp_path) -> None:
    from PIL import Image

    steps = np.arange(41)
    real = np.zeros((41, 4), np.float32)
    real[:, 2] = 0.01 * steps  # the pole tips slowly
    imagined = real.copy()
    imagined[20:, 0] = 0.1 * (steps[20:] - 20)  # the dream's cart wanders off from step 20
    path = tmp_path / "dream.gif"
    frames = save_dream_gif(
        real, imagined, diverged_at=20, model_done=30, threshold=1e-2, path=path, every=2
    )
    assert frames == 21  # steps 0, 2, ..., 40
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.n_frames == frames
    assert path.stat().st_size < 1_000_000


# ----------------------------------------------------------------------------- the coverage map


class TrueCartPole(CountingModel):
    """A 'model' that is CartPole itself (gymnasium's physics, one step): exact by construction.
    With `wrong_beyond`, it adds 0.1 m to the cart's position wherever x > wrong_beyond."""

    def __init__(self, wrong_beyond: float = float("inf")) -> None:
        super().__init__()
        self.wrong_beyond = wrong_beyond

    def step(self, state, action):
        from app.plan_with_model import true_rollout

        truth = true_rollout(state.numpy(), action.numpy()[:, None])
        next_state = torch.as_tensor(truth.next_states[:, 0])
        next_state[:, 0] += 0.1 * (state[:, 0] > self.wrong_beyond)
        return next_state, torch.ones(len(state)), torch.as_tensor(truth.terminated[:, 0]).float()


def test_the_coverage_map_is_measured_against_cartpoles_own_physics() -> None:
    from app.plan_with_model import SLICES, accuracy_table, coverage_map

    rng = np.random.default_rng(0)
    exact = coverage_map(TrueCartPole(), cells=8, rng=rng)
    for found in exact.values():
        expect_close(
            found["error"], np.zeros((8, 8)), "one-step error of an exact model", atol=1e-10
        )
        expect_close(found["false_done"], np.zeros((8, 8)), "false dones of an exact model")
    wrong = coverage_map(TrueCartPole(wrong_beyond=1.0), cells=8, rng=rng)["position x angle"]
    low, high = wrong["edges"][0][[0, -1]]
    centres = (wrong["edges"][0][:-1] + wrong["edges"][0][1:]) / 2
    beyond = centres > 1.0 + (high - low) / 8  # cells wholly past x = 1
    within = centres < 1.0 - (high - low) / 8
    expect_close(
        wrong["error"][beyond],
        np.full_like(wrong["error"][beyond], 0.01 / 4),
        "error where the model is wrong (0.1 m on x: 0.01 / 4)",
    )
    expect_close(
        wrong["error"][within],
        np.zeros_like(wrong["error"][within]),
        "error where it is exact",
        atol=1e-10,
    )
    assert set(SLICES) == set(exact)
    table = accuracy_table(
        TrueCartPole(), rng.normal(0, 0.05, (50, 4)), rng.integers(0, 2, 50), 200, 0
    )
    assert all(row["state_mse"] < 1e-10 and row["false_done_rate"] == 0 for row in table.values())


def test_the_balancing_states_span_several_episodes() -> None:
    """CartPole ends an episode after 500 steps: asking for more states than that must gather
    them over several episodes, not stop at the first one's 500."""
    from app.plan_with_model import balancing_transitions

    states, actions = balancing_transitions(1_200, seed=0)
    assert states.shape == (1_200, 4) and actions.shape == (1_200,)
    assert set(np.unique(actions)) == {0, 1} and np.isfinite(states).all()
