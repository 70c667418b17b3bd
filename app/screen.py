"""The model screen: the world model as the judge of which Q-network acts in the real environment.

A DQN's greedy policy can collapse between two evaluations and recover later. The screen keeps
that collapse out of the real environment. The agent acts, and is evaluated, with an *acting copy*
of its Q-network; every `screen_interval` real steps the copy takes the learner's weights only if
the learner's greedy episodes, imagined by the world model from real episode starts, last at least
as long as the copy's own. The learner itself keeps learning either way.

While the latest real episode reached the time limit, the acting network has proven itself in
reality and the model *rests*: no screen (a policy proven in reality is not swapped for one that
only the model vouches for) and no imagined updates (the learner goes on with real data alone).

The Dyna loop (app/agent.py) talks to a screen through four members, outside the learner's code:
    acting_network        the network that acts in the environment and is evaluated
    imagines()            whether this step makes imagined updates
    after_step(...)       called after every learning step (screens when one is due)
    after_episode(...)    called when a real episode ends
`make_screen` returns `NoScreen` (act with the learner, always imagine) for plain DQN (K = 0) or
with --screen-interval 0. docs/results.md (sixth and seventh rounds) has the measurements.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from app.common import UserError, require_positive
from app.plan_with_model import imagine_rollout
from app.policies import greedy
from app.world_model import WorldModel, WorldModelEnsemble


@dataclass
class ScreenConfig:
    """Settings of the model screen."""

    screen_interval: int = 100
    """Dyna only: every this many real steps the world model screens the learner: the agent acts
    and is evaluated with an acting copy of the Q-network, which takes the learner's weights only
    if the learner's greedy episodes, imagined from real episode starts, last at least as long as
    its own. While the latest real episode reached the time limit the model rests: no screen and no
    imagined updates (0 = no screen: act with the learner itself, imagine at every step)"""
    screen_horizon: int = 500
    """imagined steps per screening episode (CartPole's own time limit)"""
    screen_starts: int = 64
    """real episode-start states per screen"""

    def __post_init__(self) -> None:
        if self.screen_interval < 0:
            raise UserError(
                f"--screen-interval must be >= 0 (0 = no screen), got {self.screen_interval}"
            )
        require_positive(self, "screen_horizon", "screen_starts")

    def describe(self) -> str:
        """The screen in words, for a plot caption ('' when there is none)."""
        if self.screen_interval == 0:
            return ""
        return (
            "; it acts with a copy of its Q-network that takes the learner's weights only when "
            f"the model's imagined episodes ({self.screen_horizon} steps) last as long, checked "
            f"every {self.screen_interval} steps; while its latest real episode reached the time "
            "limit the model rests (no screen, no imagined updates)"
        )


class NoScreen:
    """Plain Dyna (or DQN): the learner acts, and imagination runs at every learning step."""

    def __init__(self, q_network: nn.Module) -> None:
        self.acting_network = q_network

    def imagines(self) -> bool:
        return True

    def after_step(self, step: int, model, buffer) -> None:
        pass

    def after_episode(self, terminated: bool) -> None:
        pass

    def record(self) -> dict:
        return {"screens": 0, "screens_accepted": 0}


class ModelScreen(NoScreen):
    """An acting copy of `q_network` that takes its weights when the model vouches for them.

    Args:
        q_network: the learner (it is never changed here).
        cfg: how often, how long and from how many starts to screen.
        learning_starts: the warm-up steps; screens are due every `screen_interval` steps after it.
        generator: draws the start states (the agent's own generator: a seed fixes the screens).
    """

    def __init__(
        self,
        q_network: nn.Module,
        cfg: ScreenConfig,
        learning_starts: int,
        generator: torch.Generator,
    ) -> None:
        self.learner = q_network
        self.acting_network = copy.deepcopy(q_network)
        self.cfg, self.learning_starts, self.generator = cfg, learning_starts, generator
        self.proven = False  # the latest real episode reached the time limit: the model rests
        self.screens = self.accepted = 0

    def imagines(self) -> bool:
        return not self.proven

    def after_step(self, step: int, model, buffer) -> None:
        due = (step - self.learning_starts + 1) % self.cfg.screen_interval == 0
        if model is not None and due and not self.proven:
            self.screens += 1
            self.accepted += self.screen(model, buffer)

    def after_episode(self, terminated: bool) -> None:
        self.proven = not terminated

    def record(self) -> dict:
        return {"screens": self.screens, "screens_accepted": self.accepted}

    @torch.no_grad()
    def screen(self, model: WorldModel | WorldModelEnsemble, buffer) -> bool:
        """Let the acting network take the learner's weights if the model rates them no worse.

        Imagines greedy episodes of up to `screen_horizon` steps with both networks from the same
        real episode-start states; the learner is accepted when its imagined episodes last at
        least as long in total. Returns whether it was accepted.
        """
        starts = stored_episode_starts(buffer)
        pick = torch.randint(len(starts), (self.cfg.screen_starts,), generator=self.generator)
        states = buffer.state[starts[pick]]
        horizon = self.cfg.screen_horizon
        bar = imagined_episode_lengths(model, states, self.acting_network, horizon).sum().item()
        learner = imagined_episode_lengths(model, states, self.learner, horizon, give_up_below=bar)
        accepted = learner.sum().item() >= bar
        if accepted:
            self.acting_network.load_state_dict(self.learner.state_dict())
        return accepted


def episode_starts(episode: torch.Tensor) -> torch.Tensor:
    """(N,) rows of a buffer whose state is the first of an episode (a reset state), given the
    (N,) episode index of each row, in the order they were stored."""
    first = torch.ones_like(episode, dtype=torch.bool)
    first[1:] = episode[1:] != episode[:-1]
    return torch.nonzero(first).squeeze(1)


def stored_episode_starts(buffer) -> torch.Tensor:
    """The rows of a replay buffer that hold the first state of an episode. Once the ring buffer
    has wrapped, its rows are read oldest first; the oldest (mid-episode by then) is left out."""
    if buffer.size < buffer.capacity:
        return episode_starts(buffer.episode[: buffer.size])
    rows = torch.arange(buffer.capacity, device=buffer.episode.device)
    oldest_first = (rows + buffer.position) % buffer.capacity
    starts = oldest_first[episode_starts(buffer.episode[oldest_first])]
    return starts[1:] if len(starts) > 1 else starts


def make_screen(
    cfg: ScreenConfig,
    q_network: nn.Module,
    planning_steps: int,
    learning_starts: int,
    generator: torch.Generator,
) -> NoScreen:
    """A `ModelScreen` for Dyna with --screen-interval > 0, else `NoScreen`."""
    if planning_steps > 0 and cfg.screen_interval > 0:
        return ModelScreen(q_network, cfg, learning_starts, generator)
    return NoScreen(q_network)


@torch.no_grad()
def imagined_episode_lengths(
    model: WorldModel | WorldModelEnsemble,
    start_states: torch.Tensor,
    network: nn.Module,
    horizon: int,
    give_up_below: float = -math.inf,
    chunk: int = 25,
) -> torch.Tensor:
    """(B,) steps that greedy episodes with `network` last in the model, up to `horizon`.

    Phase 4's `imagine_rollout`, `chunk` steps at a time, so it can stop early: once the total
    can no longer reach `give_up_below` even if every living episode lasts to the horizon, the
    lengths so far are returned (a screen needs no more to say no). Every step of a living episode
    is computed exactly as one long rollout would compute it.
    """
    lengths = torch.zeros(len(start_states), dtype=torch.long, device=start_states.device)
    alive = torch.ones_like(lengths, dtype=torch.bool)
    states, imagined = start_states, 0
    while imagined < horizon and alive.any():
        steps = min(chunk, horizon - imagined)
        rollout = imagine_rollout(model, states, greedy(network), steps)
        lengths += (rollout.valid & alive[:, None]).sum(dim=1)
        alive &= rollout.valid[:, -1] & ~rollout.dones[:, -1]
        states, imagined = rollout.next_states[:, -1], imagined + steps
        if lengths.sum() + alive.sum() * (horizon - imagined) < give_up_below:
            break
    return lengths
