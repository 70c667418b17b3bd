"""The grader's own test: plausible learner mistakes, each applied to the reference, must each make
their phase's practice check fail.

    uv run python -m tests.mutations           # every mistake; prints the catch rate per gap
    uv run python -m tests.mutations --gap forward --verbose

For each gap: at least three mistakes a learner plausibly makes (the nbgrader and otter-grader
authors validate their autograders this way). A mistake that passes its check means the check
cannot tell right from wrong there: write the test that catches it. tests/test_mutations.py runs
the whole list in CI.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from app.grader import run_tests
from app.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mistake:
    gap: str  # the region it is made in ("" for code around the gaps)
    what: str  # the mistake in a learner's words
    file: str
    old: str  # text of the reference, exactly once in `file`
    new: str
    phase: int = 0  # for a mistake outside any gap: the phase whose check must catch it


WM, TRAIN, PLAN, AGENT = "app/world_model.py", "app/train_model.py", "app/plan_with_model.py", "app/agent.py"

MISTAKES = [
    # ---------------------------------------------------------------- phase 2: WorldModel.__init__
    Mistake("WorldModel.__init__", "no activation between the layers (a linear model)", WM,
            "layers += [nn.Linear(H, H), nn.SiLU()]", "layers += [nn.Linear(H, H)]"),
    Mistake("WorldModel.__init__", "one hidden layer too many", WM,
            "for _ in range(config.num_layers - 1):", "for _ in range(config.num_layers):"),
    Mistake("WorldModel.__init__", "the encoder reads the state only, not the action", WM,
            "layers: list[nn.Module] = [nn.Linear(S + A, H), nn.SiLU()]",
            "layers: list[nn.Module] = [nn.Linear(S, H), nn.SiLU()]"),
    Mistake("WorldModel.__init__", "a two-way done head (the softmax habit)", WM,
            "self.done_head = nn.Linear(H, 1)", "self.done_head = nn.Linear(H, 2)"),
    # ---------------------------------------------------------------- phase 2: WorldModel.forward
    Mistake("WorldModel.forward", "skips the input normalisation", WM,
            "x = (state - self.state_mean) / self.state_std  # (B, S)", "x = state  # (B, S)"),
    Mistake("WorldModel.forward", "multiplies by the std instead of dividing", WM,
            "x = (state - self.state_mean) / self.state_std  # (B, S)",
            "x = (state - self.state_mean) * self.state_std  # (B, S)"),
    Mistake("WorldModel.forward", "returns a probability instead of a logit", WM,
            "done_logit = self.done_head(h).squeeze(-1)  # (B,)",
            "done_logit = torch.sigmoid(self.done_head(h)).squeeze(-1)  # (B,)"),
    Mistake("WorldModel.forward", "normalises the state with the change's statistics", WM,
            "x = (state - self.state_mean) / self.state_std  # (B, S)",
            "x = (state - self.delta_mean) / self.delta_std  # (B, S)"),
    # ---------------------------------------------------------------- phase 2: compute_loss
    Mistake("WorldModel.compute_loss", "the state target is s', not the normalised change", WM,
            'target_delta = (batch["next_state"] - batch["state"] - self.delta_mean) / self.delta_std',
            'target_delta = (batch["next_state"] - self.delta_mean) / self.delta_std'),
    Mistake("WorldModel.compute_loss", "de-normalises in the wrong order", WM,
            'target_delta = (batch["next_state"] - batch["state"] - self.delta_mean) / self.delta_std',
            'target_delta = (batch["next_state"] - batch["state"]) / self.delta_std - self.delta_mean'),
    Mistake("WorldModel.compute_loss", "forgets the class weight of the rare done", WM,
            ', pos_weight=self.done_pos_weight\n', '\n'),
    Mistake("WorldModel.compute_loss", "regresses done with MSE on a sigmoid", WM,
            'done_loss = F.binary_cross_entropy_with_logits(\n            done_logit, batch["terminated"].float(), pos_weight=self.done_pos_weight\n        )',
            'done_loss = F.mse_loss(torch.sigmoid(done_logit), batch["terminated"].float())'),
    Mistake("WorldModel.compute_loss", "an L1 reward loss", WM,
            'reward_loss = F.mse_loss(reward, batch["reward"])',
            'reward_loss = F.l1_loss(reward, batch["reward"])'),
    # ---------------------------------------------------------------- phase 3: train_epoch
    Mistake("train_epoch", "never clears the gradients (they add up)", TRAIN,
            "        optimizer.zero_grad(set_to_none=True)\n        total.backward()\n",
            "        total.backward()\n"),
    Mistake("train_epoch", "clears the gradients after backward, before the step", TRAIN,
            "        optimizer.zero_grad(set_to_none=True)\n        total.backward()\n        optimizer.step()\n",
            "        total.backward()\n        optimizer.zero_grad(set_to_none=True)\n        optimizer.step()\n"),
    Mistake("train_epoch", "steps before backpropagating", TRAIN,
            "        total.backward()\n        optimizer.step()\n",
            "        optimizer.step()\n        total.backward()\n"),
    Mistake("train_epoch", "computes the loss on the whole training set at every step", TRAIN,
            "total, parts = model.compute_loss(batch)\n        optimizer",
            "total, parts = model.compute_loss(train)\n        optimizer"),
    # ---------------------------------------------------------------- phase 3: evaluate
    Mistake("evaluate", "the error in normalised units, not raw", TRAIN,
            'squared_error = (next_state - data["next_state"]) ** 2  # (N, S), raw units',
            'squared_error = ((next_state - data["next_state"]) / model.delta_std) ** 2'),
    Mistake("evaluate", "compares the prediction with s instead of s' (off by one)", TRAIN,
            'squared_error = (next_state - data["next_state"]) ** 2  # (N, S), raw units',
            'squared_error = (next_state - data["state"]) ** 2  # (N, S), raw units'),
    Mistake("evaluate", "calls done from probability 0.5, not the model's rule", TRAIN,
            "predicted = model.is_done(done_prob)  # (N,) bool",
            "predicted = done_prob >= 0.5  # (N,) bool"),
    # ---------------------------------------------------------------- phase 4: imagine_rollout
    Mistake("imagine_rollout", "never stops at a predicted done", PLAN,
            "            alive = alive & ~done\n", "            alive = alive\n"),
    Mistake("imagine_rollout", "the done step itself is marked invalid", PLAN,
            "next_states[:, t], dones[:, t], valid[:, t] = next_state, done, alive",
            "next_states[:, t], dones[:, t], valid[:, t] = next_state, done, alive & ~done"),
    Mistake("imagine_rollout", "every step starts from the start state", PLAN,
            "        state = next_state\n    # ### END SOLUTION",
            "        state = start_states\n    # ### END SOLUTION"),
    Mistake("imagine_rollout", "takes the actions of row t instead of column t", PLAN,
            "action = policy_or_actions[:, t]", "action = policy_or_actions[t]"),
    # ---------------------------------------------------------------- phase 4: accuracy
    Mistake("evaluate_model_accuracy", "compares s_{t+1} with s_t (off by one)", PLAN,
            "squared_error = ((imagined[:, 1:] - real.states[:, 1:]) ** 2).mean(axis=-1)",
            "squared_error = ((imagined[:, 1:] - real.states[:, :-1]) ** 2).mean(axis=-1)"),
    Mistake("evaluate_model_accuracy", "stops the replay at a predicted done", PLAN,
            "rollout = imagine_rollout(model, start, actions, horizon, stop_at_done=False)",
            "rollout = imagine_rollout(model, start, actions, horizon, stop_at_done=True)"),
    Mistake("evaluate_model_accuracy", "counts steps after the real episode ended", PLAN,
            "    squared_error[~real.alive[:, 1:]] = np.nan  # only steps the real episode reached\n",
            ""),
    Mistake("evaluate_model_accuracy", "sums over the state variables instead of the mean", PLAN,
            "squared_error = ((imagined[:, 1:] - real.states[:, 1:]) ** 2).mean(axis=-1)",
            "squared_error = ((imagined[:, 1:] - real.states[:, 1:]) ** 2).sum(axis=-1)"),
    # ---------------------------------------------------------------- phase 5: select_action
    Mistake("DQNAgent.select_action", "explores with probability 1 - epsilon", AGENT,
            "explore = torch.rand(B, generator=self.generator) < epsilon",
            "explore = torch.rand(B, generator=self.generator) > epsilon"),
    Mistake("DQNAgent.select_action", "ignores the network passed in", AGENT,
            "q_values = (self.q_network if network is None else network)(states)  # (B, A)",
            "q_values = self.q_network(states)  # (B, A)"),
    Mistake("DQNAgent.select_action", "argmin instead of argmax", AGENT,
            "greedy = q_values.argmax(dim=1)  # (B,)", "greedy = q_values.argmin(dim=1)  # (B,)"),
    Mistake("DQNAgent.select_action", "a random action that is never the last one", AGENT,
            "random_actions = torch.randint(NUM_ACTIONS, (B,), generator=self.generator)",
            "random_actions = torch.randint(NUM_ACTIONS - 1, (B,), generator=self.generator)"),
    Mistake("DQNAgent.select_action", "draws the coins from torch's global generator", AGENT,
            "explore = torch.rand(B, generator=self.generator) < epsilon",
            "explore = torch.rand(B) < epsilon"),
    # ---------------------------------------------------------------- phase 5: td_target
    Mistake("DQNAgent.td_target", "bootstraps from the online network", AGENT,
            'next_q = self.target_network(batch["next_state"])  # (B, A)',
            'next_q = self.q_network(batch["next_state"])  # (B, A)'),
    Mistake("DQNAgent.td_target", "never cuts the bootstrap at a termination", AGENT,
            'not_done = 1.0 - batch["terminated"].float()', "not_done = 1.0"),
    Mistake("DQNAgent.td_target", "Double DQN picks a' with the target network", AGENT,
            'best = self.q_network(batch["next_state"]).argmax(dim=1, keepdim=True)  # (B, 1)',
            'best = self.target_network(batch["next_state"]).argmax(dim=1, keepdim=True)  # (B, 1)'),
    Mistake("DQNAgent.td_target", "forgets the discount", AGENT,
            'target = batch["reward"] + self.gamma * not_done * next_value',
            'target = batch["reward"] + not_done * next_value'),
    # ---------------------------------------------------------------- phase 5: train_on_batch
    Mistake("DQNAgent.train_on_batch", "regresses the max Q, not the taken action's", AGENT,
            'q_taken = q_values.gather(1, batch["action"][:, None]).squeeze(1)  # (B,)',
            "q_taken = q_values.max(dim=1).values  # (B,)"),
    Mistake("DQNAgent.train_on_batch", "hard-codes the squared error instead of self.td_loss",
            AGENT, "loss = self.td_loss(q_taken, target)", "loss = F.mse_loss(q_taken, target)"),
    Mistake("DQNAgent.train_on_batch", "never clears the gradients", AGENT,
            "        self.optimizer.zero_grad(set_to_none=True)\n        loss.backward()\n",
            "        loss.backward()\n"),
    # ---------------------------------------------------------------- phase 5: imagined updates
    Mistake("_train_on_simulated_data", "imagined transitions are never terminal", AGENT,
            '"terminated": rollout.dones[valid],',
            '"terminated": torch.zeros_like(rollout.dones[valid]),'),
    Mistake("_train_on_simulated_data", "keeps the steps after an imagined episode ended", AGENT,
            "valid = rollout.valid & trusted_steps(model, rollout)  # (B, k)",
            "valid = torch.ones_like(rollout.valid) & trusted_steps(model, rollout)  # (B, k)"),
    Mistake("_train_on_simulated_data", "one big update instead of K", AGENT,
            "shuffled = {name: values[order].chunk(num_updates) for name, values in imagined.items()}",
            "shuffled = {name: values[order].chunk(1) for name, values in imagined.items()}"),
    Mistake("_train_on_simulated_data", "greedy dreams (no exploration)", AGENT,
            "model, starts, lambda s: agent.select_action(s, epsilon), rollout_length",
            "model, starts, lambda s: agent.select_action(s, 0.0), rollout_length"),
    Mistake("_train_on_simulated_data", "starts the dreams from next states", AGENT,
            'starts = buffer.sample(num_starts, agent.generator)["state"]  # (B, S) real states',
            'starts = buffer.sample(num_starts, agent.generator)["next_state"]  # (B, S)'),
    Mistake("_train_on_simulated_data", "K updates whatever the count (chunk can give fewer)", AGENT,
            "for i in range(len(shuffled[\"action\"])):  # chunk gives fewer pieces if count < num_updates",
            "for i in range(num_updates):"),
    # ---------------------------------------------------------------- phase 5: the Dyna loop
    Mistake("train_dyna_agent", "refits the model at every step", AGENT,
            "if model is not None and (step - cfg.learning_starts) % cfg.model_train_interval == 0:",
            "if model is not None:"),
    Mistake("train_dyna_agent", "imagines before the refit (an unfitted model dreams)", AGENT,
            """            # keep the world model up to date with the agent's own data
            if model is not None and (step - cfg.learning_starts) % cfg.model_train_interval == 0:
                fitter.refit(buffer)
            if imagine_now:  # learn from imagined experience
                imagined_total += _train_on_simulated_data(
                    agent, model, buffer, cfg.planning_steps, cfg.rollout_length,
                    cfg.batch_size, epsilon,
                )  # fmt: skip
""",
            """            if imagine_now:  # learn from imagined experience
                imagined_total += _train_on_simulated_data(
                    agent, model, buffer, cfg.planning_steps, cfg.rollout_length,
                    cfg.batch_size, epsilon,
                )  # fmt: skip
            # keep the world model up to date with the agent's own data
            if model is not None and (step - cfg.learning_starts) % cfg.model_train_interval == 0:
                fitter.refit(buffer)
"""),
    Mistake("train_dyna_agent", "one real update per step whatever cfg.real_updates says", AGENT,
            "for _ in range(cfg.real_updates):  # learn from real experience",
            "for _ in range(1):  # learn from real experience"),
    Mistake("train_dyna_agent", "counts only the latest imagined transitions", AGENT,
            "                imagined_total += _train_on_simulated_data(\n",
            "                imagined_total = _train_on_simulated_data(\n"),
    Mistake("train_dyna_agent", "imagines whenever there is a model (ignores imagine_now)", AGENT,
            "if imagine_now:  # learn from imagined experience",
            "if model is not None:  # learn from imagined experience"),
    Mistake("train_dyna_agent", "real batches without the terminal samples", AGENT,
            "batch = buffer.sample(cfg.batch_size, generator, cfg.terminal_samples)",
            "batch = buffer.sample(cfg.batch_size, generator)"),
    # ---------------------------------------------------------------- phase 5: around the gaps
    Mistake("", "stability counts the solving evaluation too", "app/runs.py",
            "after = np.asarray(returns)[np.asarray(steps) > solved_at][:STABILITY_WINDOW]",
            "after = np.asarray(returns)[np.asarray(steps) >= solved_at][:STABILITY_WINDOW]",
            phase=5),
]


@dataclass
class Verdict:
    mistake: Mistake
    caught: bool
    by: str  # the test that failed (or why it could not run)
    seconds: float


def phase_of(mistake: Mistake, regions: dict[str, int]) -> int:
    return regions[mistake.gap] if mistake.gap else mistake.phase


def apply(root: Path, mistake: Mistake) -> str:
    """Make the mistake in the copy at `root`; returns the original text to put back."""
    path = root / mistake.file
    text = path.read_text()
    count = text.count(mistake.old)
    if count != 1:
        raise ValueError(f"{mistake.what!r}: its text occurs {count} times in {mistake.file}")
    path.write_text(text.replace(mistake.old, mistake.new))
    return text


def try_mistake(root: Path, mistake: Mistake, regions: dict[str, int]) -> Verdict:
    phase = phase_of(mistake, regions)
    gaps = [name for name, number in regions.items() if number == phase]
    original = apply(root, mistake)
    started = time.perf_counter()
    try:
        report = run_tests(root, gaps, phase, timeout=60, exitfirst=True)
    finally:
        (root / mistake.file).write_text(original)
    failed = [o for o in report.outcomes if o.outcome != "passed"]
    by = failed[0].name if failed else report.problem or "nothing failed"
    return Verdict(mistake, bool(failed or report.problem), by, time.perf_counter() - started)


def scratch_copy(folder: Path) -> Path:
    for name in ("app", "tests", "docs"):
        shutil.copytree(REPO / name, folder / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(REPO / "pyproject.toml", folder / "pyproject.toml")
    return folder


def run(mistakes: list[Mistake], workers: int = 2, out=sys.stdout) -> list[Verdict]:
    """Try every mistake in `workers` scratch copies of the project, printing each verdict."""
    regions = {r.name: r.phase for r in Workspace(REPO).regions()}
    unknown = {m.gap for m in mistakes if m.gap and m.gap not in regions}
    if unknown:
        raise ValueError(f"mistakes name unknown gaps: {sorted(unknown)}")
    with tempfile.TemporaryDirectory() as folder:
        roots = [scratch_copy(Path(folder) / f"copy{i}") for i in range(workers)]
        free = list(roots)
        verdicts: list[Verdict] = []

        def one(mistake: Mistake) -> Verdict:
            root = free.pop()
            try:
                verdict = try_mistake(root, mistake, regions)
            finally:
                free.append(root)
            mark = "caught" if verdict.caught else "MISSED"
            print(f"  {mark:6}  {mistake.gap or 'phase ' + str(mistake.phase):26} {mistake.what}"
                  f"  ({verdict.by}, {verdict.seconds:.1f} s)", file=out, flush=True)  # fmt: skip
            return verdict

        with ThreadPoolExecutor(workers) as pool:
            verdicts = list(pool.map(one, mistakes))
    return verdicts


def summary(verdicts: list[Verdict]) -> list[str]:
    by_gap: dict[str, list[Verdict]] = {}
    for verdict in verdicts:
        key = verdict.mistake.gap or f"(phase {verdict.mistake.phase}, around the gaps)"
        by_gap.setdefault(key, []).append(verdict)
    lines = ["", "| gap | mistakes | caught |", "| --- | --- | --- |"]
    for gap, items in by_gap.items():
        caught = sum(v.caught for v in items)
        lines.append(f"| {gap} | {len(items)} | {caught}/{len(items)} |")
    caught = sum(v.caught for v in verdicts)
    lines.append(f"\nCaught {caught} of {len(verdicts)} plausible mistakes "
                 f"({100 * caught / max(len(verdicts), 1):.0f}%).")  # fmt: skip
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutations", description=__doc__)
    parser.add_argument("--gap", help="only the mistakes of this gap (its name or last part)")
    parser.add_argument("--workers", type=int, default=2, help="scratch copies checked at once")
    args = parser.parse_args(argv)
    chosen = [m for m in MISTAKES if not args.gap or args.gap in (m.gap, m.gap.split(".")[-1])]
    if not chosen:
        print(f"error: no mistakes for gap {args.gap!r}", file=sys.stderr)
        return 2
    print(f"Trying {len(chosen)} plausible mistakes, each against its phase's check ...")
    started = time.perf_counter()
    verdicts = run(chosen, args.workers)
    print("\n".join(summary(verdicts)))
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0 if all(v.caught for v in verdicts) else 1


if __name__ == "__main__":
    raise SystemExit(main())
