"""Phase 4 contract: imagined rollouts (shapes, stopping at done) and open-loop accuracy."""

from __future__ import annotations

import numpy as np
import torch

from app.plan_with_model import (
    RealTrajectories,
    evaluate_model_accuracy,
    first_crossing,
    imagine_rollout,
    save_dream_gif,
)
from app.world_model import WorldModel, WorldModelConfig


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


def test_rollout_shapes_with_real_model() -> None:
    model = WorldModel(WorldModelConfig(hidden_size=32))
    policy = lambda states: torch.zeros(len(states), dtype=torch.long)  # noqa: E731
    rollout = imagine_rollout(model, torch.randn(6, 4), policy, horizon=5, stop_at_done=False)
    assert rollout.states.shape == rollout.next_states.shape == (6, 5, 4)
    for name in ("actions", "rewards", "dones", "valid"):
        assert getattr(rollout, name).shape == (6, 5), name
    assert rollout.actions.dtype == torch.long and rollout.valid.dtype == torch.bool
    assert rollout.valid.all()
    torch.testing.assert_close(rollout.states[:, 1:], rollout.next_states[:, :-1])


def test_rollout_stops_each_trajectory_at_done() -> None:
    start = torch.zeros(3, 4)
    start[:, 0] = torch.tensor([0.0, 1.0, 2.0])  # reaches x = 3 after 3, 2 and 1 steps
    policy = lambda states: torch.zeros(len(states), dtype=torch.long)  # noqa: E731
    rollout = imagine_rollout(CountingModel(), start, policy, horizon=5)
    expected_valid = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]]).bool()
    torch.testing.assert_close(rollout.valid, expected_valid)
    done_steps = (rollout.dones & rollout.valid).nonzero().tolist()
    assert done_steps == [[0, 2], [1, 1], [2, 0]]  # exactly one done per trajectory, at its end
    torch.testing.assert_close(
        rollout.next_states[:, :, 0][rollout.valid], torch.tensor([1.0, 2.0, 3.0, 2.0, 3.0, 3.0])
    )


def test_rollout_follows_given_actions() -> None:
    actions = torch.tensor([[1, 0, 1]])
    rollout = imagine_rollout(CountingModel(), torch.full((1, 4), -10.0), actions, horizon=3)
    torch.testing.assert_close(rollout.actions, actions)
    torch.testing.assert_close(rollout.next_states[0, :, 0], torch.tensor([-8.0, -7.0, -5.0]))


def test_rollout_policy_sees_current_state() -> None:
    seen = []

    def policy(states):
        seen.append(states[:, 0].clone())
        return torch.zeros(len(states), dtype=torch.long)

    imagine_rollout(CountingModel(), torch.full((2, 4), -5.0), policy, horizon=3)
    torch.testing.assert_close(torch.stack(seen)[:, 0], torch.tensor([-5.0, -4.0, -3.0]))


def test_accuracy_hand_computed() -> None:
    """Real states stand still; the model moves x by 1 a step: error h^2 / S at step h."""
    B, H, S = 2, 4, 4
    states = np.zeros((B, H + 1, S), np.float32)
    states[:, :, 0] = -100.0  # far from the model's done line
    alive = np.ones((B, H + 1), bool)
    alive[1, 3:] = False  # episode 1 ended after reaching s_2
    real = RealTrajectories(states, np.zeros((B, H), np.int64), alive)
    accuracy = evaluate_model_accuracy(CountingModel(), real)
    expected = np.array([[1, 4, 9, 16], [1, 4, np.nan, np.nan]]) / S
    np.testing.assert_allclose(accuracy.squared_error, expected)
    summary = accuracy.per_step()
    np.testing.assert_array_equal(summary["count"], [2, 2, 1, 1])
    np.testing.assert_allclose(summary["mean"], np.array([1, 4, 9, 16]) / S)
    assert first_crossing(summary["step"], summary["mean"], threshold=2.0) == 3
    assert first_crossing(summary["step"], summary["mean"], threshold=100.0) is None


def test_accuracy_of_perfect_model_is_zero() -> None:
    """Open-loop replay must continue past a predicted done: a perfect copy gives zero error."""

    class Copy(CountingModel):
        def step(self, state, action):
            return state.clone(), torch.ones(len(state)), torch.ones(len(state))  # always "done"

    states = np.random.default_rng(0).normal(size=(3, 6, 4)).astype(np.float32)
    states[:] = states[:, :1]
    real = RealTrajectories(states, np.zeros((3, 5), np.int64), np.ones((3, 6), bool))
    assert np.nanmax(evaluate_model_accuracy(Copy(), real).squared_error) == 0.0


def test_dream_gif_is_a_small_animation(tmp_path) -> None:
    from PIL import Image

    steps = np.arange(41)
    real = np.zeros((41, 4), np.float32)
    real[:, 2] = 0.01 * steps  # the pole tips slowly
    imagined = real.copy()
    imagined[20:, 0] = 0.1 * (steps[20:] - 20)  # the dream's cart wanders off from step 20
    path = tmp_path / "dream.gif"
    frames = save_dream_gif(real, imagined, diverged_at=20, threshold=1e-2, path=path, every=2)
    assert frames == 21  # steps 0, 2, ..., 40
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.n_frames == frames
    assert path.stat().st_size < 1_000_000
