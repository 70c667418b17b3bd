"""Phase 3b: train the world model on the collected transitions (plain supervised learning).

    uv run python -m app.train_model

Reads data/transitions.npz (from `python -m app.data_collection`).
Writes checkpoints/world_model.pt (best-validation weights + the config and normalisation
statistics that rebuild the model), plots/training_curve.png (train and validation loss per head)
and checkpoints/world_model_metrics.json (every epoch's metrics).

The validation set is made of whole episodes the model never trains on. Splitting single
transitions at random would leak: neighbouring steps of one episode are nearly identical, so the
validation loss would look better than the model is.
"""

from __future__ import annotations

import copy
import math
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from matplotlib.ticker import MaxNLocator

from app import stopped_by
from app.common import (
    CHECKPOINT_PATH,
    DATA_PATH,
    NUM_ACTIONS,
    PLOTS_DIR,
    STATE_DIM,
    STATE_NAMES,
    TRAIN_COMMAND,
    UserError,
    cli,
    configure_threads,
    network_bytes,
    progress,
    require,
    require_memory,
    require_positive,
    resolve_device,
    seed_everything,
)
from app.plotting import COLORS, add_caption, new_figure, save_figure
from app.storage import (
    Transitions,
    load_checkpoint,
    load_transitions,
    require_writable,
    run_metadata,
    save_checkpoint,
    save_json,
)
from app.world_model import WorldModel, WorldModelConfig, build_world_model

Batch = dict[str, torch.Tensor]
CHECKPOINT_KIND = "world_model"


@dataclass
class Config:
    """Train the world model on data/transitions.npz."""

    data: Path = DATA_PATH
    """transitions to learn from"""
    checkpoint: Path = CHECKPOINT_PATH
    """where to write the trained model"""
    plot: Path = PLOTS_DIR / "training_curve.png"
    """where to write the loss curves"""
    epochs: int = 60
    """passes over the training set"""
    batch_size: int = 128
    """B: transitions per gradient step"""
    lr: float = 1e-3
    """peak Adam learning rate (cosine-decayed to zero over the epochs)"""
    weight_decay: float = 1e-5
    """AdamW weight decay"""
    val_fraction: float = 0.2
    """share of *episodes* held out for validation"""
    hidden_size: int = WorldModelConfig.hidden_size
    """width of the encoder's hidden layers"""
    num_layers: int = WorldModelConfig.num_layers
    """hidden layers in the shared encoder"""
    done_loss_weight: float = WorldModelConfig.done_loss_weight
    """weight of the done BCE in the total loss (state and reward MSE weigh 1)"""
    seed: int = 0
    """seeds the split, the initial weights and the batch order"""
    device: str = "cpu"
    """cpu, or cuda when a GPU is present"""

    def __post_init__(self) -> None:
        require_positive(self, "epochs", "batch_size", "lr", "hidden_size", "num_layers")
        require_memory(
            network_bytes(self.hidden_size, self.num_layers, self.batch_size),
            f"a world model of {self.num_layers} x {self.hidden_size} units",
        )
        require(
            0.0 < self.val_fraction < 1.0,
            f"--val-fraction must be between 0 and 1, got {self.val_fraction}",
        )
        require(self.weight_decay >= 0, f"--weight-decay must be >= 0, got {self.weight_decay}")
        require(
            self.done_loss_weight >= 0,
            f"--done-loss-weight must be >= 0, got {self.done_loss_weight}",
        )


# ----------------------------------------------------------------------------- data


def split_by_episode(
    episode: np.ndarray, val_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (train, validation) such that no episode has rows on both sides."""
    episodes = rng.permutation(np.unique(episode))
    num_val = max(1, round(len(episodes) * val_fraction))
    if num_val >= len(episodes):
        raise UserError(
            f"holding out {val_fraction:g} of {len(episodes)} episode(s) leaves none to train on: "
            "lower --val-fraction, or collect more with `uv run python -m app.data_collection`"
        )
    val_mask = np.isin(episode, episodes[:num_val])
    return np.flatnonzero(~val_mask), np.flatnonzero(val_mask)


def to_batch(data: Transitions, device: torch.device) -> Batch:
    """numpy -> torch at the edge: the fields `WorldModel.compute_loss` reads, on `device`."""
    return {
        "state": torch.as_tensor(data.state, device=device),
        "action": torch.as_tensor(data.action, device=device),
        "reward": torch.as_tensor(data.reward, device=device),
        "next_state": torch.as_tensor(data.next_state, device=device),
        "terminated": torch.as_tensor(data.terminated, device=device),
    }


# ----------------------------------------------------------------------------- one epoch


def train_epoch(
    model: WorldModel,
    optimizer: torch.optim.Optimizer,
    train: Batch,
    batch_size: int,
    generator: torch.Generator,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> dict[str, float]:
    """One pass over `train` in shuffled mini-batches. Returns the mean of each loss part.

    Args:
        train: the full training set, each field with N rows (see `to_batch`).
        generator: draws the shuffling order, so a seed fixes the batches.
        scheduler: if given, stepped after every optimizer step.
    """
    model.train()
    num_rows = len(train["action"])
    order = torch.randperm(num_rows, generator=generator).to(train["action"].device)
    sums = {"total": 0.0, "state": 0.0, "reward": 0.0, "done": 0.0}
    num_batches = 0
    for start in range(0, num_rows, batch_size):
        rows = order[start : start + batch_size]
        batch = {name: values[rows] for name, values in train.items()}
        # TODO(phase 3): one gradient step on `batch`: compute the loss, backpropagate, update.
        # HINT: `model.compute_loss(batch)` returns (total, parts): keep both names, the code
        #       below sums them. Clear old gradients with optimizer.zero_grad() before
        #       total.backward(), then optimizer.step(): one step per mini-batch.
        # ### BEGIN SOLUTION (phase 3: train_epoch)
        total, parts = model.compute_loss(batch)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        # ### END SOLUTION
        if scheduler is not None:
            scheduler.step()
        sums["total"] += total.item()
        for name, value in parts.items():
            sums[name] += value.item()
        num_batches += 1
    return {name: value / num_batches for name, value in sums.items()}


@torch.no_grad()
def evaluate(model: WorldModel, data: Batch) -> dict[str, float | list[float]]:
    """Held-out metrics, in the units a user cares about.

    Returns the loss parts (comparable with training), the 1-step state MSE in raw units (mean and
    per state dimension), and the precision/recall of the model's done rule (`is_done`).
    """
    model.eval()
    # TODO(phase 3): the validation step: the loss parts, the 1-step squared error of the
    # predicted next state in raw units, and the done decisions.
    # HINT: total, parts = model.compute_loss(data); `model.step(state, action)` gives raw-unit
    #       next states and done probabilities; `model.is_done(probability)` turns them into
    #       decisions (its threshold is 0.3, not 0.5).
    # HINT: leave total, parts, squared_error ((N, S): (predicted s' - real s')^2 in raw units)
    #       and predicted ((N,) bool); the code below turns them into the metrics.
    # ### BEGIN SOLUTION (phase 3: evaluate)
    total, parts = model.compute_loss(data)
    next_state, _, done_prob = model.step(data["state"], data["action"])
    squared_error = (next_state - data["next_state"]) ** 2  # (N, S), raw units
    predicted = model.is_done(done_prob)  # (N,) bool
    # ### END SOLUTION
    assert squared_error.shape == data["state"].shape, "squared_error must be (N, S)"
    actual = data["terminated"]
    true_positives = (predicted & actual).sum().item()
    return {
        "total": total.item(),
        **{name: value.item() for name, value in parts.items()},
        "state_mse_raw": squared_error.mean().item(),
        "state_mse_raw_per_dim": squared_error.mean(0).tolist(),
        "done_precision": true_positives / max(predicted.sum().item(), 1),
        "done_recall": true_positives / max(actual.sum().item(), 1),
    }


def fit_world_model(
    model: WorldModel,
    train: Batch,
    val: Batch | None,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    seed: int,
    show_progress: bool = True,
    history: list[dict] | None = None,
) -> list[dict]:
    """Train `model` in place and leave it holding the best-validation weights.

    Fits the normalisation statistics on `train` first. Returns one dict per epoch with the train
    losses and (if `val` is given) the validation metrics, also appended to `history` as they
    finish (so a caller still has them after Ctrl-C). A non-finite loss raises `UserError`.
    """
    model.set_normalization(train["state"], train["next_state"], train["terminated"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(train["action"]) / batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.05
    )
    generator = torch.Generator().manual_seed(seed)
    history = [] if history is None else history
    best_loss, best_weights = math.inf, copy.deepcopy(model.state_dict())
    bar = progress(
        range(1, epochs + 1), desc="training", unit="epoch", disable=None if show_progress else True
    )
    try:
        for epoch in bar:
            train_losses = train_epoch(model, optimizer, train, batch_size, generator, scheduler)
            if not math.isfinite(train_losses["total"]):
                raise UserError(
                    f"training diverged: the loss became {train_losses['total']} at "
                    f"epoch {epoch}; try a smaller --lr (nothing was written)"
                )
            row = {"epoch": epoch, "train": train_losses}
            if val is not None:
                row["val"] = evaluate(model, val)
                if row["val"]["total"] < best_loss:
                    best_loss, best_weights = row["val"]["total"], copy.deepcopy(model.state_dict())
                bar.set_postfix(val_state_mse=f"{row['val']['state_mse_raw']:.2e}")
            history.append(row)
    finally:
        if val is not None:
            model.load_state_dict(best_weights)
    return history


class ModelFitter:
    """A world model fitted, again and again, to a growing replay buffer (phase 5's Dyna agent).

    The first `refit` sets the normalisation statistics from the buffer and trains for
    `initial_epochs`; each later one is one `train_epoch` on `sample_size` transitions drawn from
    the buffer, or nothing at all for a frozen model (`refit_each_time` False). A model loaded from
    a checkpoint counts as `fitted` already.

    Args:
        buffer (at each refit): anything with `.size`, `.as_batch()` and `.sample(n, generator)`.
    """

    def __init__(
        self,
        model: WorldModel,
        initial_epochs: int,
        sample_size: int,
        refit_each_time: bool,
        generator: torch.Generator,
        fitted: bool = False,
    ) -> None:
        self.model, self.initial_epochs, self.sample_size = model, initial_epochs, sample_size
        self.refit_each_time, self.generator, self.fitted = refit_each_time, generator, fitted
        self.optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)

    def refit(self, buffer) -> None:
        if self.fitted and not self.refit_each_time:
            return  # a frozen model
        epochs = 1
        if not self.fitted:  # first fit: normalisation statistics from the buffer
            data = buffer.as_batch()
            self.model.set_normalization(data["state"], data["next_state"], data["terminated"])
            epochs, self.fitted = self.initial_epochs, True
        for _ in range(epochs):
            sample = buffer.sample(min(self.sample_size, buffer.size), self.generator)
            train_epoch(self.model, self.optimizer, sample, 128, self.generator)
        self.model.eval()


# ----------------------------------------------------------------------------- checkpoint I/O


def save_world_model(path: Path, model: WorldModel, meta: dict) -> None:
    save_checkpoint(path, CHECKPOINT_KIND, model.state_dict(), asdict(model.config), meta=meta)


def load_world_model(
    path: Path = CHECKPOINT_PATH, device: torch.device | str = "cpu"
) -> WorldModel:
    """Rebuild the model from a checkpoint; any mismatch is one `UserError` naming the fix."""
    keys = {f.name: float if f.type == "float" else int for f in fields(WorldModelConfig)}
    payload = load_checkpoint(path, CHECKPOINT_KIND, TRAIN_COMMAND, config_keys=keys)
    redo = f"re-create it with `{TRAIN_COMMAND}`"
    try:
        model = build_world_model(payload["config"])
        model.load_state_dict(payload["state_dict"])
    except (TypeError, RuntimeError, KeyError) as error:
        lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
        reason = lines[1] if len(lines) > 1 else lines[0] if lines else type(error).__name__
        reason = reason.split(". ")[0][:140]
        raise UserError(f"{path} does not match this WorldModel ({reason}): {redo}") from None
    if (model.config.state_dim, model.config.num_actions) != (STATE_DIM, NUM_ACTIONS):
        raise UserError(
            f"{path} was trained for {model.config.state_dim} state dims and "
            f"{model.config.num_actions} actions; CartPole has {STATE_DIM} and {NUM_ACTIONS}: "
            f"{redo}"
        )
    return model.to(device).eval()


# ----------------------------------------------------------------------------- plot


def plot_training_curve(
    history: list[dict], path: Path, caption: str, meta: dict | None = None
) -> None:
    epochs = [row["epoch"] for row in history]
    fig, axes = new_figure(1, 4, width=3.6, height=3.4)
    titles = {
        "total": "total loss (picks the kept epoch)",
        "state": "next-state loss (MSE, normalised Δs)",
        "reward": "reward loss (MSE)",
        "done": "done loss (weighted BCE)",
    }
    for ax, (part, title) in zip(axes[0], titles.items(), strict=True):
        ax.plot(
            epochs, [row["train"][part] for row in history], color=COLORS["train"], label="train"
        )
        ax.plot(
            epochs,
            [row["val"][part] for row in history],
            color=COLORS["validation"],
            label="validation (held-out episodes)",
        )
        ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss (log scale)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0][0].legend()
    best = min(history, key=lambda row: row["val"]["total"])
    for ax in axes[0]:
        ax.axvline(best["epoch"], color="#888888", ls=":", lw=1)
    fig.suptitle(
        f"World model training. Dotted line: epoch {best['epoch']}, the lowest total validation "
        "loss (left panel), whose weights are kept; a single head's curve may be higher there"
    )
    add_caption(fig, caption)
    save_figure(fig, path, meta)


# ----------------------------------------------------------------------------- main


def main(cfg: Config) -> dict:
    metrics_path = cfg.checkpoint.with_name(cfg.checkpoint.stem + "_metrics.json")
    require_writable(cfg.checkpoint, metrics_path, cfg.plot)  # before the work, not after it
    configure_threads()
    device = resolve_device(cfg.device)
    data = load_transitions(cfg.data)
    rng = seed_everything(cfg.seed)
    train_rows, val_rows = split_by_episode(data.episode, cfg.val_fraction, rng)
    train, val = to_batch(data.subset(train_rows), device), to_batch(data.subset(val_rows), device)

    model_config = WorldModelConfig(
        hidden_size=cfg.hidden_size,
        num_layers=cfg.num_layers,
        done_loss_weight=cfg.done_loss_weight,
    )
    model = WorldModel(model_config).to(device)
    history: list[dict] = []
    stopped: KeyboardInterrupt | None = None
    print(
        f"Training on {len(train_rows):,} transitions for {cfg.epochs} epochs (the defaults take "
        "about 10 s on a 2-core laptop; Ctrl-C stops early and keeps the best finished epoch)",
        flush=True,
    )
    try:
        fit_world_model(
            model,
            train,
            val,
            cfg.epochs,
            cfg.batch_size,
            cfg.lr,
            cfg.weight_decay,
            cfg.seed,
            history=history,
        )
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM
        if not history:
            raise
        stopped = stop  # keep the epochs that finished: the model holds the best of them

    best = min(history, key=lambda row: row["val"]["total"])
    meta = run_metadata(cfg)
    save_world_model(cfg.checkpoint, model.cpu(), meta)
    save_json(
        metrics_path,
        {
            "best_epoch": best["epoch"],
            "best": best["val"],
            "interrupted": stopped is not None,
            "history": history,
            **meta,
        },
    )
    plot_training_curve(
        history,
        cfg.plot,
        f"{len(train_rows):,} train / {len(val_rows):,} validation transitions (split by episode), "
        f"batch {cfg.batch_size}, lr {cfg.lr:g}, hidden {cfg.hidden_size}x{cfg.num_layers}, "
        f"seed {cfg.seed}.",
        meta,
    )

    v = best["val"]
    per_dim = ", ".join(
        f"{name} {mse:.1e}"
        for name, mse in zip(STATE_NAMES, v["state_mse_raw_per_dim"], strict=True)
    )
    print(
        f"Best validation epoch {best['epoch']}/{cfg.epochs} on {len(val_rows):,} held-out "
        "transitions:"
    )
    print(f"  1-step state MSE (raw units): {v['state_mse_raw']:.2e}   ({per_dim})")
    print(
        f"  reward MSE: {v['reward']:.2e}   done BCE: {v['done']:.3f}   "
        f"done precision {v['done_precision']:.3f}, recall {v['done_recall']:.3f}"
    )
    print(f"Wrote {cfg.checkpoint}, {metrics_path} and {cfg.plot}")
    if stopped is not None:
        what, code = stopped_by(stopped)
        print(
            f"{what[0].upper()}{what[1:]} after {len(history)} of {cfg.epochs} epochs: the files "
            f"above hold the best finished epoch. To train in full, run `{TRAIN_COMMAND}` again.",
            file=sys.stderr,
        )
        raise SystemExit(code)
    return best["val"]


if __name__ == "__main__":
    cli(main, Config)
