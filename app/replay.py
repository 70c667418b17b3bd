"""The replay buffer of phase 5's agent: every real transition, preallocated on the device.

A ring buffer of tensors (no Python objects per step), uniform mini-batches with an optional
share drawn from the real terminations (`--terminal-samples`: the rare falls stay in view once the
agent rarely fails), and the whole content as one batch for the world model's refits.
"""

from __future__ import annotations

import torch

from app.common import STATE_DIM

Batch = dict[str, torch.Tensor]


class ReplayBuffer:
    """Preallocated ring buffer of real transitions, stored as tensors on `device`."""

    def __init__(self, capacity: int, device: torch.device) -> None:
        self.capacity, self.size, self.position = capacity, 0, 0
        self.state = torch.zeros(capacity, STATE_DIM, device=device)
        self.action = torch.zeros(capacity, dtype=torch.long, device=device)
        self.reward = torch.zeros(capacity, device=device)
        self.next_state = torch.zeros(capacity, STATE_DIM, device=device)
        self.terminated = torch.zeros(capacity, dtype=torch.bool, device=device)
        self.episode = torch.zeros(capacity, dtype=torch.long, device=device)
        self._terminal_rows: torch.Tensor | None = None  # cache of `terminal_rows()`

    def add(self, state, action, reward, next_state, terminated, episode) -> None:
        """Store one transition, over the oldest once full (a time limit is not `terminated`)."""
        i = self.position
        if terminated or self.terminated[i]:  # the set of terminal rows changes
            self._terminal_rows = None
        self.state[i] = torch.as_tensor(state)
        self.action[i], self.reward[i] = action, reward
        self.next_state[i] = torch.as_tensor(next_state)
        self.terminated[i], self.episode[i] = terminated, episode
        self.position = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator, terminal: int = 0) -> Batch:
        """B uniformly drawn transitions, except the first `terminal` from the terminations."""
        rows = torch.randint(self.size, (batch_size,), generator=generator).to(self.state.device)
        if terminal > 0:
            ends = self.terminal_rows()
            if len(ends) > 0:
                rows[:terminal] = ends[torch.randint(len(ends), (terminal,), generator=generator)]
        return {name: values[rows] for name, values in self.as_batch().items()}

    def terminal_rows(self) -> torch.Tensor:
        """(N,) rows of the terminated transitions (cached until one is added or overwritten)."""
        if self._terminal_rows is None:
            self._terminal_rows = torch.nonzero(self.terminated[: self.size]).squeeze(1)
        return self._terminal_rows

    def as_batch(self) -> Batch:
        """Every stored transition (views, no copy), with the fields `train_on_batch` reads."""
        fields = ("state", "action", "reward", "next_state", "terminated")
        return {name: getattr(self, name)[: self.size] for name in fields}
