"""Phase 2: the neural world model, an MLP that predicts (next state, reward, done) from (s, a).

    uv run python -m app.world_model      # shape self-check, exit code 0 when every check passes

Reads nothing, writes nothing. The model is used by every later phase:
train_model fits it, plan_with_model rolls it out, agent trains a DQN on its imagined transitions.

Design, in brief:
  * A shared encoder reads (normalised state, one-hot action); three heads read the encoding.
  * The state head predicts the *change* of state, normalised. CartPole moves a little each 20 ms
    step, so s' is almost s: predicting s' directly would spend the network on copying its input.
  * The normalisation statistics are buffers, so they live in the state_dict and the checkpoint
    alone rebuilds the model.
  * The done head outputs a logit trained with a weighted BCE, because the done target is rare
    (about 1 random transition in 22, far rarer under a good policy). The weighting shifts the
    logit by log(pos_weight); `done_probability` takes that shift back out, so the probability is
    calibrated; "done" means probability >= `done_threshold` (0.3, see `WorldModelConfig`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from app.common import (
    NUM_ACTIONS,
    STATE_DIM,
    cli,
    network_bytes,
    require_memory,
    require_positive,
    resolve_device,
)


@dataclass
class WorldModelConfig:
    """Everything needed to rebuild a `WorldModel`; stored inside every checkpoint."""

    state_dim: int = STATE_DIM
    num_actions: int = NUM_ACTIONS
    hidden_size: int = 200
    num_layers: int = 3  # hidden layers in the shared encoder
    state_loss_weight: float = 1.0
    reward_loss_weight: float = 1.0
    done_loss_weight: float = 1.0
    # Decision rule on the calibrated done probability. Not 0.5: a missed termination lets an
    # imagined episode run on past a fall (optimism the agent then exploits), while a false one only
    # ends a rollout early. Calling "done" from P >= 0.3 is the Bayes decision when a miss costs
    # about 2.3x a false alarm; it also offsets the pull of the rare class towards "not done" near
    # the boundary, where the network cannot be infinitely sharp.
    done_threshold: float = 0.3


class WorldModel(nn.Module):
    """(state, action) -> (normalised state change, reward, done logit).

    Args:
        config: sizes of the network and the weights of the three loss terms.
    """

    def __init__(self, config: WorldModelConfig) -> None:
        super().__init__()
        self.config = config
        S, A, H = config.state_dim, config.num_actions, config.hidden_size
        # Normalisation statistics, filled in from training data by `set_normalization`.
        self.register_buffer("state_mean", torch.zeros(S))
        self.register_buffer("state_std", torch.ones(S))
        self.register_buffer("delta_mean", torch.zeros(S))
        self.register_buffer("delta_std", torch.ones(S))
        self.register_buffer("done_pos_weight", torch.tensor(1.0))

        # TODO(phase 2): build `self.encoder` and the heads `self.state_head`, `self.reward_head`,
        # `self.done_head`.
        # HINT: the encoder is an nn.Sequential that reads S + A numbers (state and one-hot
        #       action): `config.num_layers` nn.Linear layers of width H, each followed by
        #       nn.SiLU(), so [Linear(S + A, H), SiLU(), Linear(H, H), SiLU(), ...].
        # HINT: the heads are single nn.Linear layers from H to S, 1 and 1 outputs.
        # ### BEGIN SOLUTION (phase 2: WorldModel.__init__)
        layers: list[nn.Module] = [nn.Linear(S + A, H), nn.SiLU()]
        for _ in range(config.num_layers - 1):
            layers += [nn.Linear(H, H), nn.SiLU()]
        self.encoder = nn.Sequential(*layers)
        self.state_head = nn.Linear(H, S)  # normalised s' - s
        self.reward_head = nn.Linear(H, 1)
        self.done_head = nn.Linear(H, 1)  # a logit: sigmoid + BCE, not regression
        # ### END SOLUTION

    # -- statistics ------------------------------------------------------------------------------

    @torch.no_grad()
    def set_normalization(
        self, state: torch.Tensor, next_state: torch.Tensor, terminated: torch.Tensor
    ) -> None:
        """Fit the input/target statistics and the done class weight to training data.

        Args:
            state, next_state: (N, S) raw states.
            terminated: (N,) bool, true environment terminations (never time-limit truncations).
        """
        delta = next_state - state
        self.state_mean.copy_(state.mean(0))
        self.state_std.copy_(state.std(0).clamp_min(1e-6))
        self.delta_mean.copy_(delta.mean(0))
        self.delta_std.copy_(delta.std(0).clamp_min(1e-6))
        positives = terminated.float().sum().clamp_min(1.0)
        self.done_pos_weight.fill_(((len(terminated) - positives) / positives).clamp_min(1.0))

    # -- the network -----------------------------------------------------------------------------

    def forward(
        self, state: torch.Tensor, action: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Predict from raw states and integer actions.

        Args:
            state: (B, S) float, raw units.
            action: (B,) int64 in [0, A).
        Returns:
            delta: (B, S) predicted (s' - s), normalised by `delta_mean` / `delta_std`.
            reward: (B,) predicted reward, raw units.
            done_logit: (B,) logit of termination, shifted by log(done_pos_weight) (see module doc).
        """
        # TODO(phase 2): normalise the state, one-hot the action, encode both, apply the heads.
        # HINT: x = (state - self.state_mean) / self.state_std; F.one_hot(action, A).float().
        # HINT: torch.cat([...], dim=-1) joins them; squeeze(-1) turns (B, 1) heads into (B,).
        # HINT: leave the outputs in delta, reward and done_logit; the done head's output is the
        #       logit itself (no sigmoid: the loss and `done_probability` apply it).
        # ### BEGIN SOLUTION (phase 2: WorldModel.forward)
        x = (state - self.state_mean) / self.state_std  # (B, S)
        a = F.one_hot(action.long(), self.config.num_actions).to(x.dtype)  # (B, A)
        h = self.encoder(torch.cat([x, a], dim=-1))  # (B, H)
        delta = self.state_head(h)  # (B, S)
        reward = self.reward_head(h).squeeze(-1)  # (B,)
        done_logit = self.done_head(h).squeeze(-1)  # (B,)
        # ### END SOLUTION
        B = len(state)
        assert delta.shape == state.shape, f"state head: {tuple(delta.shape)}, expected {(B, -1)}"
        assert reward.shape == done_logit.shape == (B,), "reward and done heads must give (B,)"
        return delta, reward, done_logit

    def compute_loss(
        self, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Weighted sum of the three head losses on one batch of real transitions.

        Args:
            batch: "state" (B, S), "action" (B,), "reward" (B,), "next_state" (B, S),
                "terminated" (B,) bool.
        Returns:
            total: scalar tensor to backpropagate.
            parts: {"state", "reward", "done"} scalar tensors, detached, unweighted.
        """
        # TODO(phase 2): the three losses: MSE on the normalised state change, MSE on the reward,
        # BCE on the done logit.
        # HINT: the state target is (next_state - state - self.delta_mean) / self.delta_std.
        # HINT: F.binary_cross_entropy_with_logits(..., pos_weight=self.done_pos_weight) makes the
        #       rare done examples count as much as the common ones; the target must be float.
        # HINT: leave the three losses in state_loss, reward_loss and done_loss (F.mse_loss for
        #       the first two); the code below weighs and returns them.
        # ### BEGIN SOLUTION (phase 2: WorldModel.compute_loss)
        delta, reward, done_logit = self(batch["state"], batch["action"])
        target_delta = (batch["next_state"] - batch["state"] - self.delta_mean) / self.delta_std
        state_loss = F.mse_loss(delta, target_delta)
        reward_loss = F.mse_loss(reward, batch["reward"])
        done_loss = F.binary_cross_entropy_with_logits(
            done_logit, batch["terminated"].float(), pos_weight=self.done_pos_weight
        )
        # ### END SOLUTION
        cfg = self.config
        total = (
            cfg.state_loss_weight * state_loss
            + cfg.reward_loss_weight * reward_loss
            + cfg.done_loss_weight * done_loss
        )
        parts = {"state": state_loss, "reward": reward_loss, "done": done_loss}
        return total, {name: value.detach() for name, value in parts.items()}

    # -- using the model as a simulator ----------------------------------------------------------

    def done_probability(self, done_logit: torch.Tensor) -> torch.Tensor:
        """Calibrated P(terminated): undo the log(pos_weight) shift that the weighted BCE adds."""
        return torch.sigmoid(done_logit - torch.log(self.done_pos_weight))

    def is_done(self, done_probability: torch.Tensor) -> torch.Tensor:
        """The decision rule: (B,) probabilities -> (B,) bool."""
        return done_probability >= self.config.done_threshold

    @torch.no_grad()  # no_grad, not inference_mode: imagined data later feeds Q-network training
    def step(
        self, state: torch.Tensor, action: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One batched simulator step in raw units.

        Args:
            state: (B, S) raw states. action: (B,) int64.
        Returns:
            next_state (B, S), reward (B,), done_probability (B,) in [0, 1].
        """
        delta, reward, done_logit = self(state, action)
        next_state = state + delta * self.delta_std + self.delta_mean
        return next_state, reward, self.done_probability(done_logit)


def build_world_model(config: dict | WorldModelConfig) -> WorldModel:
    """Rebuild a model from the plain config dict stored in a checkpoint."""
    if isinstance(config, dict):
        config = WorldModelConfig(**config)
    return WorldModel(config)


def model_config_dict(model: WorldModel) -> dict:
    return asdict(model.config)


# ================================================================================ phase 6: ensemble


class WorldModelEnsemble(nn.Module):
    """E world models whose disagreement says where the learned simulator should not be trusted.

    A drop-in for `WorldModel` wherever the model is trained (`compute_loss`, so phase 3's
    `train_epoch` fits it unchanged) or rolled out (`step`, `is_done`). Members differ in their
    initial weights and in their data: each trains on its own bootstrap resample of every batch.
    Where the training data were dense the members agree; off the data they extrapolate
    differently, so their spread is an estimate of the model's own error (as in PETS and MBPO).

    Args:
        config: the members' shared architecture.
        size: E, the number of members.
        max_disagreement: where `trusted_steps` ends an imagined rollout: the first step at which
            the members' next states differ by more than this many typical one-step changes.
    """

    def __init__(
        self, config: WorldModelConfig, size: int, max_disagreement: float = math.inf
    ) -> None:
        super().__init__()
        self.config = config
        self.max_disagreement = max_disagreement
        self.members = nn.ModuleList(WorldModel(config) for _ in range(size))

    def set_normalization(self, state, next_state, terminated) -> None:
        for member in self.members:
            member.set_normalization(state, next_state, terminated)

    def compute_loss(self, batch: dict[str, torch.Tensor]):
        """Mean of the members' losses, each on its own resample (with replacement) of `batch`."""
        B = len(batch["action"])
        totals, parts = [], []
        for member in self.members:
            rows = torch.randint(B, (B,), device=batch["action"].device)  # the bootstrap
            total, member_parts = member.compute_loss({k: v[rows] for k, v in batch.items()})
            totals.append(total)
            parts.append(member_parts)
        mean_parts = {name: torch.stack([p[name] for p in parts]).mean() for name in parts[0]}
        return torch.stack(totals).mean(), mean_parts

    def is_done(self, done_probability: torch.Tensor) -> torch.Tensor:
        return self.members[0].is_done(done_probability)

    @torch.no_grad()
    def predict(self, state: torch.Tensor, action: torch.Tensor):
        """Every member's (E, B, S) next states, (E, B) rewards and (E, B) done probabilities."""
        outputs = [member.step(state, action) for member in self.members]
        return tuple(torch.stack(values) for values in zip(*outputs, strict=True))

    @torch.no_grad()
    def step(self, state: torch.Tensor, action: torch.Tensor):
        """The members' mean prediction, in `WorldModel.step`'s format."""
        next_states, rewards, done_probabilities = self.predict(state, action)
        return next_states.mean(0), rewards.mean(0), done_probabilities.mean(0)

    @torch.no_grad()
    def disagreement(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """(B,) spread of the members' next-state predictions: the largest standard deviation over
        the S state variables, each in units of that variable's typical one-step change (so 1.0
        means the members disagree by a whole typical step)."""
        next_states, _, _ = self.predict(state, action)  # (E, B, S)
        scale = self.members[0].delta_std  # (S,)
        return (next_states.std(dim=0) / scale).amax(dim=-1)


@dataclass
class EnsembleConfig:
    """Phase 6: the Dyna agent's world model as an ensemble that knows where it is unsure."""

    ensemble_size: int = 1
    """E: world models in an ensemble (1 = a single model); see --max-disagreement"""
    max_disagreement: float = math.inf
    """end an imagined rollout where the ensemble members' next states disagree by more than this
    (in typical one-step changes; inf = never)"""

    def __post_init__(self) -> None:
        require_positive(self, "ensemble_size", "max_disagreement")


def new_world_model(hidden_size: int, ensemble: EnsembleConfig) -> WorldModel | WorldModelEnsemble:
    """A fresh world model of width `hidden_size`, or an ensemble of them (phase 6)."""
    config = WorldModelConfig(hidden_size=hidden_size)
    if ensemble.ensemble_size > 1:
        return WorldModelEnsemble(config, ensemble.ensemble_size, ensemble.max_disagreement)
    return WorldModel(config)


def trusted_steps(model: WorldModel | WorldModelEnsemble, rollout) -> torch.Tensor:
    """(B, k) bool: the steps of an imagined `rollout` (phase 4's `Rollout`) before an ensemble's
    disagreement first passes its `max_disagreement`: MBPO's answer to compounding error, stop a
    dream where the models stop agreeing. All True for a single model or an infinite threshold."""
    limit = getattr(model, "max_disagreement", math.inf)
    if math.isinf(limit) or not isinstance(model, WorldModelEnsemble):
        return torch.ones_like(rollout.valid)
    B, k = rollout.actions.shape
    flat_states, flat_actions = rollout.states.flatten(0, 1), rollout.actions.flatten(0, 1)
    spread = model.disagreement(flat_states, flat_actions).view(B, k)
    return (spread <= limit).int().cumprod(dim=1).bool()


# ================================================================================ self-check


@dataclass
class Config:
    """Shape self-check of the world model."""

    batch_size: int = 32
    """B: how many (state, action) pairs to push through the model"""
    hidden_size: int = WorldModelConfig.hidden_size
    """width of the encoder's hidden layers"""
    num_layers: int = WorldModelConfig.num_layers
    """number of hidden layers in the shared encoder"""
    seed: int = 0
    """random seed for the weights and the fake batch"""
    device: str = "cpu"
    """cpu, or cuda when a GPU is present"""

    def __post_init__(self) -> None:
        require_positive(self, "batch_size", "hidden_size", "num_layers")
        require_memory(
            network_bytes(self.hidden_size, self.num_layers, self.batch_size),
            f"a world model of {self.num_layers} x {self.hidden_size} units",
        )


def self_check(cfg: Config) -> list[tuple[str, bool, str]]:
    """Run each shape check; return (check, passed, detail) rows. Never raises for a model bug."""
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    B, S, A = cfg.batch_size, STATE_DIM, NUM_ACTIONS
    results: list[tuple[str, bool, str]] = []

    def check(name: str, fn) -> object:
        try:
            detail = fn()
            results.append((name, True, detail or ""))
            return True
        except NotImplementedError as todo:
            results.append((name, False, f"TODO: {todo}"))
        except Exception as error:  # report a learner's bug as a failed check, not a traceback
            results.append((name, False, f"{type(error).__name__}: {error}"))
        return False

    holder: dict[str, object] = {}

    def build() -> str:
        config = WorldModelConfig(hidden_size=cfg.hidden_size, num_layers=cfg.num_layers)
        holder["model"] = WorldModel(config).to(device)
        params = sum(p.numel() for p in holder["model"].parameters())
        return f"{params:,} parameters"

    state = torch.randn(B, S, device=device)
    action = torch.randint(0, A, (B,), device=device)
    batch = {
        "state": state,
        "action": action,
        "reward": torch.ones(B, device=device),
        "next_state": state + 0.01 * torch.randn(B, S, device=device),
        "terminated": torch.rand(B, device=device) < 0.1,
    }

    def forward() -> str:
        delta, reward, done_logit = holder["model"](state, action)
        assert delta.shape == (B, S), f"state head gave {tuple(delta.shape)}, expected {(B, S)}"
        assert reward.shape == (B,), f"reward head gave {tuple(reward.shape)}, expected {(B,)}"
        assert done_logit.shape == (B,), (
            f"done head gave {tuple(done_logit.shape)}, expected {(B,)}"
        )
        return f"delta {tuple(delta.shape)}, reward {tuple(reward.shape)}, done {(B,)}"

    def loss() -> str:
        model = holder["model"]
        total, parts = model.compute_loss(batch)
        assert total.ndim == 0, f"total loss has shape {tuple(total.shape)}, expected a scalar"
        assert set(parts) == {"state", "reward", "done"}, f"loss parts are {sorted(parts)}"
        assert torch.isfinite(total), f"total loss is {total.item()}"
        model.zero_grad()
        total.backward()
        no_grad = [n for n, p in model.named_parameters() if p.grad is None]
        assert not no_grad, f"no gradient reaches {', '.join(no_grad)}"
        return f"total {total.item():.3f} = " + ", ".join(f"{k} {v:.3f}" for k, v in parts.items())

    def step() -> str:
        next_state, reward, done_prob = holder["model"].step(state, action)
        assert next_state.shape == (B, S), f"next_state is {tuple(next_state.shape)}"
        assert reward.shape == (B,) and done_prob.shape == (B,), "reward/done must be (B,)"
        assert ((done_prob >= 0) & (done_prob <= 1)).all(), "done probabilities outside [0, 1]"
        return f"next_state {tuple(next_state.shape)}, done probability in [0, 1]"

    if check("build WorldModel (__init__)", build):
        check("forward: shapes of the three heads", forward)
        check("compute_loss: scalar, finite, gradients reach every weight", loss)
        check("step: raw-unit simulator step", step)
    return results


def main(cfg: Config) -> bool:
    results = self_check(cfg)
    width = max(len(name) for name, _, _ in results)
    print(f"World model self-check (B={cfg.batch_size}, S={STATE_DIM}, A={NUM_ACTIONS}):")
    for name, passed, detail in results:
        print(f"  [{'PASS' if passed else 'FAIL'}] {name:<{width}}  {detail}")
    ok = all(passed for _, passed, _ in results) and len(results) == 4
    print("All checks passed." if ok else "Some checks failed: fix the first FAIL above.")
    return ok


if __name__ == "__main__":
    cli(main, Config)
