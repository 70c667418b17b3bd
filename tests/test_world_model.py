"""Phase 2 contract: the world model's layers, forward pass, loss, normalisation and simulator step.

The tests marked `gap(...)` grade the practice gaps (`practice check 2`). They use normalisation
statistics far from mean 0 / std 1, states where s' and the change s' - s differ, and heads with
known outputs, so that a plausible mistake (a skipped normalisation, the wrong state target, a
forgotten class weight) cannot pass.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from numpy.testing import assert_allclose
from torch import nn

from app import world_model
from app.world_model import WorldModel, WorldModelConfig
from tests.grading import expect, expect_close, expect_shape

B, S, A = 8, 4, 2
INIT, FORWARD, LOSS = "WorldModel.__init__", "WorldModel.forward", "WorldModel.compute_loss"


def make_batch(batch_size: int = B) -> dict[str, torch.Tensor]:
    state = torch.randn(batch_size, S)
    return {
        "state": state,
        "action": torch.randint(0, A, (batch_size,)),
        "reward": torch.ones(batch_size),
        "next_state": state + 0.05 * torch.randn(batch_size, S),
        "terminated": torch.arange(batch_size) % 4 == 0,
    }


def zero_heads(model: WorldModel) -> None:
    """Make every head output exactly 0, whatever the encoder computes."""
    with torch.no_grad():
        for head in (model.state_head, model.reward_head, model.done_head):
            for parameter in head.parameters():
                parameter.zero_()


def odd_statistics(model: WorldModel) -> None:
    """Normalisation statistics far from 0 and 1, different per state variable."""
    model.state_mean.copy_(torch.tensor([0.5, -1.0, 0.1, 2.0]))
    model.state_std.copy_(torch.tensor([2.0, 0.5, 0.05, 4.0]))
    model.delta_mean.copy_(torch.tensor([0.02, -0.3, 0.01, 0.5]))
    model.delta_std.copy_(torch.tensor([0.1, 0.4, 0.02, 2.0]))


# ----------------------------------------------------------------------------- the layers


@pytest.mark.gap(INIT)
@pytest.mark.parametrize("num_layers", [1, 3])
def test_encoder_is_num_layers_linear_silu_pairs(num_layers: int) -> None:
    model = WorldModel(WorldModelConfig(hidden_size=16, num_layers=num_layers))
    layers = list(model.encoder)
    kinds = [type(layer).__name__ for layer in layers]
    expect(
        kinds == ["Linear", "SiLU"] * num_layers,
        f"the encoder with num_layers={num_layers}: expected {num_layers} x [Linear, SiLU], "
        f"got {kinds}",
    )
    sizes = [(layer.in_features, layer.out_features) for layer in layers[::2]]
    expected = [(S + A, 16)] + [(16, 16)] * (num_layers - 1)
    expect(sizes == expected, f"encoder Linear sizes: expected {expected}, got {sizes}")


@pytest.mark.gap(INIT)
def test_heads_have_one_output_per_target() -> None:
    model = WorldModel(WorldModelConfig(hidden_size=16))
    for name, outputs in (("state_head", S), ("reward_head", 1), ("done_head", 1)):
        head = getattr(model, name, None)
        expect(isinstance(head, nn.Linear), f"self.{name}: expected an nn.Linear, got {head!r}")
        sizes = (head.in_features, head.out_features)
        expect(sizes == (16, outputs), f"self.{name}: expected Linear(16, {outputs}), got {sizes}")


# ----------------------------------------------------------------------------- forward


@pytest.mark.gap(INIT, FORWARD)
def test_forward_shapes() -> None:
    model = WorldModel(WorldModelConfig())
    batch = make_batch()
    delta, reward, done_logit = model(batch["state"], batch["action"])
    expect_shape(delta, (B, S), "the predicted state change")
    expect_shape(reward, (B,), "the predicted reward")
    expect_shape(done_logit, (B,), "the done logit")


@pytest.mark.gap(FORWARD)
def test_forward_normalises_the_state_and_one_hots_the_action() -> None:
    """Computed by hand from the model's own layers: x = (s - mean) / std, a = one_hot(action),
    h = encoder([x, a]); the three heads read h, and the done head's output is a logit."""
    model = WorldModel(WorldModelConfig(hidden_size=16))
    odd_statistics(model)
    with torch.no_grad():
        model.done_head.bias.fill_(3.0)  # a logit well above 1: a probability would be below 1
    state = torch.tensor([[1.0, -1.5, 0.12, 3.0], [-2.0, 0.0, -0.05, 1.0], [0.5, -1.0, 0.1, 2.0]])
    action = torch.tensor([1, 0, 1])
    x = (state - model.state_mean) / model.state_std
    h = model.encoder(torch.cat([x, F.one_hot(action, A).float()], dim=-1))
    delta, reward, done_logit = model(state, action)
    expect_close(delta, model.state_head(h), "the state head's output (normalised s' - s)")
    expect_close(reward, model.reward_head(h).squeeze(-1), "the reward head's output")
    expect_close(done_logit, model.done_head(h).squeeze(-1), "the done head's logit (no sigmoid)")


@pytest.mark.gap(FORWARD)
def test_action_changes_prediction() -> None:
    """The action must reach the network (one-hot input), else the model cannot learn control."""
    model = WorldModel(WorldModelConfig())
    state = torch.randn(B, S)
    left = model(state, torch.zeros(B, dtype=torch.long))[0]
    right = model(state, torch.ones(B, dtype=torch.long))[0]
    expect(not torch.allclose(left, right), "pushing left and right gave the same prediction")


# ----------------------------------------------------------------------------- compute_loss


@pytest.mark.gap(LOSS)
def test_compute_loss_hand_computed() -> None:
    """Heads that output 0: each loss term has a closed form. The statistics are not 0 and 1 and
    the states are not 0, so the state target must be the normalised *change* s' - s."""
    model = WorldModel(
        WorldModelConfig(state_loss_weight=1.0, reward_loss_weight=2.0, done_loss_weight=0.5)
    )
    zero_heads(model)
    odd_statistics(model)
    model.done_pos_weight.fill_(3.0)
    state = torch.tensor([[1.0, 2.0, 0.1, -1.0], [0.5, 0.0, -0.1, 2.0], [2.0, -1.0, 0.0, 0.0]])
    change = torch.tensor(
        [[0.12, -0.7, 0.03, 0.5], [0.02, 0.1, -0.01, 2.5], [-0.08, -0.3, 0.05, 0.0]]
    )
    batch = {
        "state": state,
        "action": torch.tensor([0, 1, 0]),
        "reward": torch.tensor([1.0, 2.0, 3.0]),
        "next_state": state + change,
        "terminated": torch.tensor([True, False, False]),
    }
    total, parts = model.compute_loss(batch)
    target = (change - model.delta_mean) / model.delta_std  # what the state head should output
    state_loss = (target**2).mean().item()  # against a prediction of 0
    reward_loss = (1 + 4 + 9) / 3
    done_loss = (3 * math.log(2) + math.log(2) + math.log(2)) / 3  # logit 0; positives count 3x
    expect_close(
        parts["state"], state_loss, "the state loss: MSE of the normalised change (s' - s)"
    )
    expect_close(parts["reward"], reward_loss, "the reward loss: MSE on the raw reward")
    expect_close(
        parts["done"], done_loss, "the done loss: BCE on the logit, positives weighted by "
        "done_pos_weight (3 here)"
    )  # fmt: skip
    expected_total = state_loss + 2 * reward_loss + 0.5 * done_loss
    expect_close(total, expected_total, "the total loss (weights 1, 2, 0.5)")


@pytest.mark.gap(INIT, FORWARD, LOSS)
def test_loss_falls_on_tiny_dataset(random_transitions) -> None:
    data = random_transitions.subset(slice(0, 256))
    batch = {
        name: torch.as_tensor(getattr(data, name))
        for name in ("state", "action", "reward", "next_state", "terminated")
    }
    model = WorldModel(WorldModelConfig(hidden_size=64, num_layers=2))
    model.set_normalization(batch["state"], batch["next_state"], batch["terminated"])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = model.compute_loss(batch)[1]
    for _ in range(300):
        total, _ = model.compute_loss(batch)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    last = model.compute_loss(batch)[1]
    expect(
        last["state"] < 0.05 * first["state"],
        f"the state loss fell from {first['state']:.4f} only to {last['state']:.4f} in 300 steps",
    )
    expect(
        last["done"] < 0.5 * first["done"],
        f"the done loss fell from {first['done']:.4f} only to {last['done']:.4f} in 300 steps",
    )


@pytest.mark.gap(FORWARD)
def test_step_returns_raw_units() -> None:
    """`step` (given) turns the normalised change back into raw units: s + delta * std + mean."""
    model = WorldModel(WorldModelConfig())
    zero_heads(model)
    odd_statistics(model)
    state = torch.randn(B, S)
    next_state, reward, done_probability = model.step(state, torch.zeros(B, dtype=torch.long))
    expect_close(next_state, state + model.delta_mean, "s' from a zero change prediction")
    expect_shape(reward, (B,), "the reward")
    in_range = ((done_probability >= 0) & (done_probability <= 1)).all()
    expect(bool(in_range), f"done probabilities outside [0, 1]: {done_probability}")


@pytest.mark.gap(INIT, FORWARD, LOSS)
def test_self_check_passes() -> None:
    results = world_model.self_check(world_model.Config())
    for _, _, detail in results:
        if detail.startswith("TODO: "):  # practice mode: point at the open TODO itself
            raise NotImplementedError(detail.removeprefix("TODO: "))
    failed = [f"{name}: {detail}" for name, passed, detail in results if not passed]
    expect(len(results) == 4 and not failed, f"self-check: {failed or results}")


# ----------------------------------------------------------------------------- given code


def test_set_normalization_statistics() -> None:
    model = WorldModel(WorldModelConfig())
    state = torch.tensor([[0.0, 0, 0, 0], [2.0, 2, 2, 2], [4.0, 4, 4, 4], [6.0, 6, 6, 6]])
    terminated = torch.tensor([True, False, False, False])
    model.set_normalization(state, state + 1.0, terminated)
    assert_allclose(model.state_mean.numpy(), [3.0] * 4)
    assert_allclose(model.state_std.numpy(), [state[:, 0].std().item()] * 4, rtol=1e-6)
    assert_allclose(model.delta_mean.numpy(), [1.0] * 4)
    assert model.delta_std.min() > 0  # constant deltas: std clamped, not 0
    assert model.done_pos_weight.item() == pytest.approx(3.0)  # 3 negatives per positive


def test_done_probability_undoes_class_weight() -> None:
    """A logit of log(pos_weight) is what weighted BCE learns for a 50/50 case: probability 0.5."""
    model = WorldModel(WorldModelConfig())
    model.done_pos_weight.fill_(20.0)
    probability = model.done_probability(torch.tensor([math.log(20.0), 0.0]))
    assert_allclose(probability.numpy(), [0.5, 1 / 21], rtol=1e-6)


# ----------------------------------------------------------------------------- phase 6: ensemble


def make_ensemble(size: int = 3) -> world_model.WorldModelEnsemble:
    ensemble = world_model.WorldModelEnsemble(WorldModelConfig(hidden_size=16), size)
    batch = make_batch(64)
    ensemble.set_normalization(batch["state"], batch["next_state"], batch["terminated"])
    return ensemble


def test_identical_members_agree_and_step_like_one_model() -> None:
    ensemble = make_ensemble()
    for member in ensemble.members[1:]:
        member.load_state_dict(ensemble.members[0].state_dict())
    batch = make_batch()
    assert_allclose(ensemble.disagreement(batch["state"], batch["action"]).numpy(), 0.0, atol=1e-6)
    for mean, single in zip(
        ensemble.step(batch["state"], batch["action"]),
        ensemble.members[0].step(batch["state"], batch["action"]),
        strict=True,
    ):
        torch.testing.assert_close(mean, single)


def test_disagreement_is_the_largest_spread_in_typical_steps() -> None:
    ensemble = make_ensemble()
    batch = make_batch()
    next_states, _, _ = ensemble.predict(batch["state"], batch["action"])  # (E, B, S)
    expected = (next_states.std(dim=0) / ensemble.members[0].delta_std).max(dim=-1).values
    spread = ensemble.disagreement(batch["state"], batch["action"])
    torch.testing.assert_close(spread, expected)
    assert (spread > 0).all()  # differently initialised members differ


def test_ensemble_loss_trains_every_member() -> None:
    ensemble = make_ensemble()
    total, parts = ensemble.compute_loss(make_batch(32))
    total.backward()
    assert set(parts) == {"state", "reward", "done"}
    for member in ensemble.members:
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in member.parameters())
