"""Phase 3b contract: episode split, the training loop, validation metrics, checkpoints."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from app.common import UserError
from app.storage import save_checkpoint
from app.train_model import (
    CHECKPOINT_KIND,
    evaluate,
    fit_world_model,
    load_world_model,
    save_world_model,
    split_by_episode,
    to_batch,
    train_epoch,
)
from app.world_model import WorldModel, WorldModelConfig
from tests.grading import expect, expect_close

TRAIN, EVALUATE = "train_epoch", "evaluate"


def small_model() -> WorldModel:
    return WorldModel(WorldModelConfig(hidden_size=64, num_layers=2))


def test_split_has_no_shared_episodes(random_transitions) -> None:
    episode = random_transitions.episode
    train, val = split_by_episode(episode, 0.2, np.random.default_rng(0))
    assert not set(episode[train]) & set(episode[val])
    assert len(train) + len(val) == len(episode)
    assert sorted(np.concatenate([train, val])) == list(range(len(episode)))
    share = len(np.unique(episode[val])) / len(np.unique(episode))
    assert share == pytest.approx(0.2, abs=0.02)


def test_split_needs_two_episodes() -> None:
    with pytest.raises(UserError, match="leaves none to train on"):
        split_by_episode(np.zeros(50, np.int64), 0.2, np.random.default_rng(0))


@pytest.fixture
def train_val(random_transitions):
    """The random-policy transitions split by episode, as (train, validation) batches."""
    train_rows, val_rows = split_by_episode(
        random_transitions.episode, 0.2, np.random.default_rng(0)
    )
    cpu = torch.device("cpu")
    return (
        to_batch(random_transitions.subset(train_rows), cpu),
        to_batch(random_transitions.subset(val_rows), cpu),
    )


class Tiny(WorldModel):
    """A 4-unit world model whose weights are easy to follow through a few SGD steps."""

    def __init__(self) -> None:
        super().__init__(WorldModelConfig(hidden_size=4, num_layers=1))


def tiny_data(rows: int = 6) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    state = torch.randn(rows, 4, generator=generator)
    return {
        "state": state,
        "action": torch.arange(rows) % 2,
        "reward": torch.ones(rows),
        "next_state": state + 0.1 * torch.randn(rows, 4, generator=generator),
        "terminated": torch.arange(rows) % 3 == 0,
    }


@pytest.mark.gap(TRAIN)
def test_train_epoch_is_one_sgd_step_per_mini_batch() -> None:
    """Plain SGD makes every step visible: after an epoch of 2 mini-batches (4 rows, then 2) the
    weights must be those of 2 steps, each on the gradient of its own batch alone."""
    data = tiny_data()
    model = Tiny()
    model.set_normalization(data["state"], data["next_state"], data["terminated"])
    expected = copy.deepcopy(model)
    order = torch.randperm(6, generator=torch.Generator().manual_seed(7))
    losses = []
    for rows in (order[:4], order[4:]):  # the reference: zero, backward, step, per batch
        total, parts = expected.compute_loss({k: v[rows] for k, v in data.items()})
        expected.zero_grad()
        total.backward()
        with torch.no_grad():
            for weight in expected.parameters():
                weight -= 0.1 * weight.grad
        losses.append(total.item())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    means = train_epoch(model, optimizer, data, 4, torch.Generator().manual_seed(7))
    for (name, got), want in zip(model.named_parameters(), expected.parameters(), strict=True):
        expect_close(got, want, f"weight {name} after one epoch of 2 SGD steps", rtol=1e-5)
    expect_close(means["total"], np.mean(losses), "the epoch's mean total loss (over 2 batches)")


@pytest.mark.gap(TRAIN, EVALUATE)
def test_train_epoch_lowers_validation_loss(train_val) -> None:
    train, val = train_val
    model = small_model()
    model.set_normalization(train["state"], train["next_state"], train["terminated"])
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    before = evaluate(model, val)
    generator = torch.Generator().manual_seed(0)
    losses = [train_epoch(model, optimizer, train, 64, generator)["total"] for _ in range(5)]
    after = evaluate(model, val)
    expect(losses[-1] < losses[0], f"the training loss did not fall over 5 epochs: {losses}")
    expect(
        after["state_mse_raw"] < 0.2 * before["state_mse_raw"],
        f"validation state MSE fell only from {before['state_mse_raw']:.2e} to "
        f"{after['state_mse_raw']:.2e} in 5 epochs",
    )
    expect(after["total"] < before["total"], "the validation loss did not fall")


@pytest.mark.gap(EVALUATE)
def test_evaluate_metrics_hand_checked() -> None:
    """Heads that output 0 predict s' = s + delta_mean (raw units) whatever delta_std is, and a
    calibrated done probability of 0.4: above the model's 0.3 rule, below 0.5."""
    model = small_model()
    with torch.no_grad():
        for head in (model.state_head, model.reward_head, model.done_head):
            for parameter in head.parameters():
                parameter.zero_()
        model.delta_mean.copy_(torch.tensor([0.1, 0.0, -0.2, 0.0]))
        model.delta_std.copy_(torch.tensor([0.5, 2.0, 0.1, 0.25]))
        model.done_pos_weight.fill_(3.0)
        model.done_head.bias.fill_(math.log(3.0) + math.log(0.4 / 0.6))  # calibrated P = 0.4
    state = torch.tensor([[1.0, 2.0, 0.0, -1.0], [0.5, -0.5, 0.1, 0.0], [0.0, 0.0, 0.0, 0.0]] * 2)
    change = torch.tensor([[0.1, 0.3, -0.2, 0.0], [0.0, 0.0, 0.0, 0.4], [0.1, 0.0, -0.2, 0.2]] * 2)
    data = {
        "state": state,
        "action": torch.zeros(6, dtype=torch.long),
        "reward": torch.ones(6),
        "next_state": state + change,
        "terminated": torch.tensor([True, False, False, False, False, False]),
    }
    metrics = evaluate(model, data)
    error = (change - model.delta_mean) ** 2  # raw units: the prediction is s + delta_mean
    expect_close(metrics["state_mse_raw"], error.mean().item(), "state_mse_raw (raw units)")
    expect_close(
        metrics["state_mse_raw_per_dim"], error.mean(0), "state_mse_raw_per_dim (one per variable)"
    )
    total, parts = model.compute_loss(data)
    expect_close(metrics["total"], total.item(), "the validation total loss (compute_loss)")
    expect_close(metrics["done"], parts["done"].item(), "the validation done loss")
    # P(done) = 0.4 everywhere: model.is_done says "done" for every row (0.4 >= 0.3)
    expect_close(metrics["done_recall"], 1.0, "done recall (the model's rule: P >= 0.3)")
    expect_close(metrics["done_precision"], 1 / 6, "done precision (the model's rule: P >= 0.3)")


@pytest.mark.gap(TRAIN, EVALUATE)
def test_fit_keeps_best_validation_weights(train_val) -> None:
    train, val = train_val
    model = small_model()
    history = fit_world_model(
        model,
        train,
        val,
        epochs=4,
        batch_size=128,
        lr=3e-3,
        weight_decay=0.0,
        seed=0,
        show_progress=False,
    )
    best = min(row["val"]["total"] for row in history)
    expect_close(evaluate(model, val)["total"], best, "validation loss of the kept weights")


def test_fit_stops_on_nan(random_transitions) -> None:
    batch = to_batch(random_transitions.subset(np.arange(200)), torch.device("cpu"))
    batch["reward"] = batch["reward"] * float("nan")
    with pytest.raises(UserError, match="diverged"):
        fit_world_model(
            small_model(),
            batch,
            batch,
            epochs=2,
            batch_size=64,
            lr=1e-3,
            weight_decay=0.0,
            seed=0,
            show_progress=False,
        )


def test_checkpoint_round_trip(tmp_path) -> None:
    model = small_model()
    model.delta_std.fill_(0.5)
    path = tmp_path / "wm.pt"
    save_world_model(path, model, meta={"seed": 0})
    loaded = load_world_model(path)
    state, action = torch.randn(5, 4), torch.tensor([0, 1, 0, 1, 1])
    for expected, got in zip(model.step(state, action), loaded.step(state, action), strict=True):
        torch.testing.assert_close(got, expected)
    assert loaded.config == model.config


def test_checkpoint_of_other_architecture_is_refused(tmp_path) -> None:
    model = small_model()
    config = {**vars(model.config), "hidden_size": 32}  # claims a size its weights do not have
    save_checkpoint(tmp_path / "wm.pt", CHECKPOINT_KIND, model.state_dict(), config)
    with pytest.raises(UserError, match="does not match.*app.train_model"):
        load_world_model(tmp_path / "wm.pt")


def test_checkpoint_of_other_kind_is_refused(tmp_path) -> None:
    save_checkpoint(tmp_path / "q.pt", "q_network", {}, {})
    with pytest.raises(UserError, match="expected a 'world_model' checkpoint"):
        load_world_model(tmp_path / "q.pt")
