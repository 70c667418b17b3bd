"""Phase 3b contract: episode split, the training loop, validation metrics, checkpoints."""

from __future__ import annotations

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
    with pytest.raises(UserError, match="too few"):
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


def test_train_epoch_lowers_validation_loss(train_val) -> None:
    train, val = train_val
    model = small_model()
    model.set_normalization(train["state"], train["next_state"], train["terminated"])
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    before = evaluate(model, val)
    generator = torch.Generator().manual_seed(0)
    losses = [train_epoch(model, optimizer, train, 64, generator)["total"] for _ in range(5)]
    after = evaluate(model, val)
    assert losses[-1] < losses[0]
    assert after["state_mse_raw"] < 0.2 * before["state_mse_raw"]
    assert after["total"] < before["total"]


def test_evaluate_metrics_hand_checked() -> None:
    """A model whose heads output 0 predicts s' = s + delta_mean and P(done) = 1/(1+pos_weight)."""
    model = small_model()
    with torch.no_grad():
        for head in (model.state_head, model.reward_head, model.done_head):
            for parameter in head.parameters():
                parameter.zero_()
        model.done_head.bias.fill_(10.0)  # calibrated probability ~1: always "done"
    state = torch.zeros(4, 4)
    data = {
        "state": state,
        "action": torch.zeros(4, dtype=torch.long),
        "reward": torch.ones(4),
        "next_state": state + torch.tensor([0.0, 0.0, 0.0, 0.2]),
        "terminated": torch.tensor([True, False, False, False]),
    }
    metrics = evaluate(model, data)
    assert metrics["state_mse_raw"] == pytest.approx(0.04 / 4)
    np.testing.assert_allclose(metrics["state_mse_raw_per_dim"], [0, 0, 0, 0.04], atol=1e-9)
    assert metrics["done_recall"] == 1.0
    assert metrics["done_precision"] == 0.25


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
    assert evaluate(model, val)["total"] == pytest.approx(best, rel=1e-5)


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
