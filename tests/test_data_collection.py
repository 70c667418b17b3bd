"""Phase 3a contract: the transitions file's schema, and truncation kept apart from termination."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from app.common import ENV_ID, UserError
from app.data_collection import collect_transitions
from app.policies import mixed_policy, random_policy
from app.storage import Transitions, load_transitions, save_transitions


def test_schema(random_transitions) -> None:
    data = random_transitions
    for name, (dtype, row_shape) in Transitions.SCHEMA.items():
        array = getattr(data, name)
        assert array.dtype == dtype, name
        assert array.shape == (len(data), *row_shape), name
    assert set(np.unique(data.action)) == {0, 1}
    assert (data.reward == 1.0).all()  # CartPole-v1 pays 1 per step, the terminal one included


def test_consecutive_rows_chain(random_transitions) -> None:
    """Within an episode, each next_state is the following row's state."""
    data = random_transitions
    same_episode = data.episode[1:] == data.episode[:-1]
    np.testing.assert_array_equal(data.next_state[:-1][same_episode], data.state[1:][same_episode])
    ends = data.terminated | data.truncated
    assert (ends[:-1] == ~same_episode).all()  # a new episode starts exactly after an end


def test_truncation_is_not_termination() -> None:
    """A perfect balancer only ever hits the 500-step limit: truncated, never terminated."""
    with gym.make(ENV_ID) as env:
        data = collect_transitions(env, mixed_policy(np.random.default_rng(0), 0.0), 1_000, 0)
    assert data.truncated.sum() == 2
    assert not data.terminated.any()
    assert data.truncated[[499, 999]].all()


def test_time_limit_truncation_with_short_limit() -> None:
    with gym.make(ENV_ID, max_episode_steps=5) as env:
        data = collect_transitions(env, mixed_policy(np.random.default_rng(0), 0.0), 20, 0)
    np.testing.assert_array_equal(np.flatnonzero(data.truncated), [4, 9, 14, 19])
    assert not (data.terminated & data.truncated).any()


def test_same_seed_same_data() -> None:
    def collect(seed: int) -> Transitions:
        with gym.make(ENV_ID) as env:
            return collect_transitions(env, random_policy(np.random.default_rng(seed)), 500, seed)

    a, b, c = collect(3), collect(3), collect(4)
    for name in Transitions.SCHEMA:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.state, c.state)


def test_round_trip(tmp_path, random_transitions) -> None:
    path = tmp_path / "t.npz"
    save_transitions(path, random_transitions, {"seed": 0})
    loaded = load_transitions(path)
    for name in Transitions.SCHEMA:
        np.testing.assert_array_equal(getattr(loaded, name), getattr(random_transitions, name))
    with np.load(path, allow_pickle=False) as archive:  # no pickles anywhere in the file
        assert set(archive.files) == {*Transitions.SCHEMA, "meta"}


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda a: a.pop("terminated"), "lacks the arrays terminated"),
        (lambda a: a.update(action=a["action"].astype(np.float32)), "'action' is float32"),
        (lambda a: a.update(state=a["state"][:, :3]), "'state' is float32[100, 3]"),
        (lambda a: a["next_state"].__setitem__((0, 0), np.nan), "NaN or inf"),
    ],
)
def test_load_rejects_wrong_schema(tmp_path, random_transitions, corrupt, message) -> None:
    data = random_transitions.subset(np.arange(100))
    arrays = {name: getattr(data, name) for name in Transitions.SCHEMA}
    corrupt(arrays)
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(UserError, match="app.data_collection") as error:
        load_transitions(path)
    assert message in str(error.value)
