"""SIGKILL one seeded digits training run at random moments and check that it still ends with the
weights of an uninterrupted run.

    python tests/reliability/kill_training.py --kills 20 --out DIR

1. Runs the training command once without interruption (``DIR/reference``) and times its phases
   (start-up, steps, final evaluation and save).
2. Draws ``--kills`` moments (seeded) uniformly over the uninterrupted run's timeline, in order:
   a time into start-up, a step plus a fraction of a step, or a time into the final evaluation
   and save. Starts the same command in ``DIR/killed`` and SIGKILLs it at the first moment,
   runs the same command again and kills it at the next one, and so on; then once more without
   a kill so that it ends at the requested step. The kills so walk through start-up, mid-step,
   mid-checkpoint and the final save of one run.
3. Compares the final ``model.keras`` weights with the reference (max |difference|) and prints the
   figures: the kills, where each landed (the last logged step and the checkpoint it resumed
   from) and the difference. Exit status 0 when the run ended at the requested step with
   max |difference| <= ``--tolerance``, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: Hang guard for one training process (generous: the machine may be loaded).
PROCESS_TIMEOUT_S = 1800
_STEP_LINE = re.compile(r"^step (\d+)/(\d+) ", re.MULTILINE)
#: "resumed from step N": where an attempt's steps start (or, at the end, its final phase).
_RESUMED_LINE = re.compile(r"^resumed from step (\d+)")
_CHECKPOINT = re.compile(r'^model_checkpoint_path: "ckpt-(\d+)"', re.MULTILINE)


@dataclass
class Kill:
    """One SIGKILL: when it came and where the run was."""

    attempt: int
    resumed_from: int  # newest checkpoint when this attempt started
    delay_s: float  # seconds after the process started
    phase: str  # start-up | training | final (after the last step)
    last_logged_step: int | None  # the last "step N/TOTAL" line printed before the kill


def training_command(model_dir: Path, steps: int, checkpoint_every: int, seed: int) -> list[str]:
    """The one seeded command every attempt runs: ResNet-20 on the 8x8 digits upscaled to 16 px."""
    return [sys.executable, "-m", "keras_resnet.training", "--model", "resnet20",
            "--dataset", "digits", "--input-size", "16", "--batch-size", "32",
            "--steps", str(steps), "--checkpoint-every", str(checkpoint_every),
            "--log-every", "1", "--eval-examples", "64", "--mean-images", "256",
            "--threads", "1", "--seed", str(seed), "--model-dir", str(model_dir)]


def training_env() -> dict[str, str]:
    """One thread per pool (as the trainer tests run) and quiet TensorFlow logs."""
    env = dict(os.environ)
    env.pop("TF_CONFIG", None)
    env.update({"PYTHONPATH": os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
                "TF_CPP_MIN_LOG_LEVEL": "2", "OMP_NUM_THREADS": "1",
                "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"})
    return env


def checkpoint_step(model_dir: Path) -> int:
    """The step of the newest checkpoint the index lists (0 without one)."""
    index = model_dir / "checkpoints" / "checkpoint"
    try:
        match = _CHECKPOINT.search(index.read_text())
    except OSError:
        return 0
    return int(match.group(1)) if match else 0


def logged_steps(log: Path) -> list[tuple[int, float]]:
    """``(step, seconds since start)`` of each progress line; the log holds ``t=SECONDS`` stamps."""
    found = []
    for line in log.read_text().splitlines():
        stamp, _, text = line.partition(" ")
        match = _STEP_LINE.match(text)
        if match:
            found.append((int(match.group(1)), float(stamp[2:])))
    return found


@dataclass
class Moment:
    """Where a kill lands, on the timeline of the uninterrupted run: ``after_s`` seconds into
    start-up (before the first step), ``after_s`` seconds after step ``step`` was logged (in
    training), or ``after_s`` seconds after the last step (final evaluation and save)."""

    phase: str  # start-up | training | final
    step: int
    after_s: float

    def reached(self, elapsed: float, last_step: int | None, since_line: float) -> bool:
        if self.phase == "start-up":
            return elapsed >= self.after_s
        return last_step is not None and last_step >= self.step and since_line >= self.after_s


def run_attempt(command: list[str], log: Path, moment: Moment | None) -> tuple[int, float]:
    """Run ``command`` writing its stdout to ``log`` (each line stamped with its time), SIGKILL it
    at ``moment`` unless it ended first; returns ``(exit code, wall seconds)``."""
    start = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=training_env(), cwd=REPO, bufsize=1)
    os.set_blocking(proc.stdout.fileno(), False)
    last_step, line_at = None, start
    with log.open("w") as out:
        while proc.poll() is None and time.monotonic() - start < PROCESS_TIMEOUT_S:
            for step in _copy_lines(proc, out, start):
                last_step, line_at = step, time.monotonic()
            now = time.monotonic()
            if moment is not None and moment.reached(now - start, last_step, now - line_at):
                break
            time.sleep(0.005)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=PROCESS_TIMEOUT_S)
        _copy_lines(proc, out, start)
    return proc.returncode, time.monotonic() - start


def _copy_lines(proc: subprocess.Popen, out, start: float) -> list[int]:
    """Copy the lines printed so far to ``out``; returns the steps their progress lines name."""
    steps = []
    for line in proc.stdout.readlines():
        out.write(f"t={time.monotonic() - start:.3f} {line}")
        match = _STEP_LINE.match(line) or _RESUMED_LINE.match(line)
        if match:
            steps.append(int(match.group(1)))
    out.flush()
    return steps


@dataclass
class Timing:
    """Phases of the uninterrupted run: the timeline the kill moments are drawn from."""

    startup_s: float
    step_s: float
    final_s: float

    def moments(self, kills: int, steps: int, rng: random.Random) -> list[Moment]:
        """``kills`` moments drawn uniformly over the uninterrupted run's timeline, in order:
        each attempt is killed at the next one, so the kills walk through start-up, the steps
        (mid-step and mid-checkpoint alike) and the final evaluation and save of one run."""
        training = steps * self.step_s
        moments = []
        for t in sorted(rng.uniform(0.0, self.startup_s + training + self.final_s)
                        for _ in range(kills)):
            if t < self.startup_s:
                moments.append(Moment("start-up", 0, t))
            elif t < self.startup_s + training:
                step, within = divmod(t - self.startup_s, self.step_s)
                moments.append(Moment("training", int(step) + 1, within))
            else:
                moments.append(Moment("final", steps, t - self.startup_s - training))
        return moments


def observed(log: Path, resumed: int, wall: float, finished: bool, timing: Timing) -> Timing:
    """``timing`` with the start-up this attempt took (when its log shows its first step) and,
    when it ran to the end, its final phase: the machine's load changes, and phase times from
    another moment would put kills in the wrong phase or after the end."""
    stamps = logged_steps(log)
    first = [t for step, t in stamps if step == resumed + 1]
    startup = max(first[0] - timing.step_s, 0.0) if first else timing.startup_s
    resumed_at = [float(line[2:].partition(" ")[0]) for line in log.read_text().splitlines()
                  if _RESUMED_LINE.match(line.partition(" ")[2])]
    if resumed_at and not first:  # nothing left to train: start-up ends at the resume line
        startup = resumed_at[0]
        stamps = [(resumed, resumed_at[0])]
    final = max(wall - stamps[-1][1], 0.0) if finished and stamps else timing.final_s
    return Timing(startup, timing.step_s, final)


def time_phases(log: Path, wall: float) -> Timing:
    stamps = logged_steps(log)
    (first_step, first_t), (last_step, last_t) = stamps[0], stamps[-1]
    step_s = (last_t - first_t) / max(last_step - first_step, 1)
    return Timing(max(first_t - first_step * step_s, 0.0), step_s, max(wall - last_t, 0.0))


def max_difference(a: Path, b: Path) -> float:
    """Max |difference| over every weight of two ``model.keras`` files (loaded safely)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np

    wa = keras.models.load_model(a, safe_mode=True).get_weights()
    wb = keras.models.load_model(b, safe_mode=True).get_weights()
    if len(wa) != len(wb):
        return float("inf")
    return max(float(np.max(np.abs(x - y))) if x.size else 0.0 for x, y in zip(wa, wb, strict=True))


def kill_phase(log: Path, steps: int) -> tuple[str, int | None]:
    stamps = logged_steps(log)
    if not stamps:
        resumed = [_RESUMED_LINE.match(line.partition(" ")[2])
                   for line in log.read_text().splitlines()]
        done = any(m and int(m.group(1)) >= steps for m in resumed)
        return ("final" if done else "start-up"), None
    last = stamps[-1][0]
    return ("final" if last >= steps else "training"), last


def run_kills(args: argparse.Namespace, timing: Timing) -> tuple[list[Kill], int]:
    """Run the command, SIGKILL it at the next drawn moment and run it again, until
    ``args.kills`` kills have landed; then once more to the end. Returns the kills and the
    attempts made."""
    rng = random.Random(args.seed)
    moments = timing.moments(args.kills, args.steps, rng)
    run_dir = args.out / "killed"
    kills: list[Kill] = []
    attempt = 0
    while True:
        attempt += 1
        if attempt > 4 * args.kills + 10:
            raise SystemExit(f"{attempt - 1} attempts landed only {len(kills)} kills")
        resumed = checkpoint_step(run_dir)
        moment = moments[len(kills)] if len(kills) < args.kills else None
        log = args.out / f"attempt-{attempt:02d}.log"
        command = training_command(run_dir, args.steps, args.checkpoint_every, args.train_seed)
        code, wall = run_attempt(command, log, moment)
        timing = observed(log, resumed, wall, code == 0, timing)
        if code == -signal.SIGKILL:
            phase, last = kill_phase(log, args.steps)
            kills.append(Kill(attempt, resumed, round(wall, 2), phase, last))
            print(f"kill {len(kills):2d}: attempt {attempt}, resumed from step {resumed}, "
                  f"killed after {wall:.1f} s in {phase}"
                  + (f" (last logged step {last})" if last is not None else ""), flush=True)
            continue
        if code != 0:
            raise SystemExit(f"attempt {attempt} exited {code}; see {log}")
        if moment is None:
            return kills, attempt
        # It ended before its moment (this attempt's phase ran shorter than the reference's):
        # the same phase again, at a moment drawn within the time it took.
        limit = timing.startup_s if moment.phase == "start-up" else timing.final_s
        moments[len(kills)] = Moment(moment.phase, moment.step, rng.uniform(0.0, limit))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=20, help="SIGKILLs to land (default 20)")
    p.add_argument("--out", type=Path, required=True, help="work folder (must not exist)")
    p.add_argument("--steps", type=int, default=300, help="training steps (default 300)")
    p.add_argument("--checkpoint-every", type=int, default=10, help="default 10")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    p.add_argument("--train-seed", type=int, default=7, help="the training command's --seed")
    p.add_argument("--tolerance", type=float, default=1e-5, help="max |difference| allowed")
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    if args.kills < 0 or args.steps < 1 or args.checkpoint_every < 1:
        p.error("--kills must be >= 0, --steps and --checkpoint-every >= 1")
    if args.out.exists():
        p.error(f"--out {str(args.out)!r} exists; give a new folder")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True)
    reference = args.out / "reference"
    code, wall = run_attempt(training_command(reference, args.steps, args.checkpoint_every,
                                              args.train_seed), args.out / "reference.log", None)
    if code != 0:
        raise SystemExit(f"the uninterrupted run exited {code}; see {args.out / 'reference.log'}")
    timing = time_phases(args.out / "reference.log", wall)
    print(f"uninterrupted run: {wall:.1f} s (start-up {timing.startup_s:.1f} s, "
          f"{timing.step_s * 1000:.0f} ms/step, final evaluation and save {timing.final_s:.1f} s)",
          flush=True)
    kills, attempts = run_kills(args, timing)
    final = json.loads((args.out / "killed" / "metrics.json").read_text())
    diff = max_difference(args.out / "killed" / "model.keras", reference / "model.keras")
    ok = final["step"] == args.steps and diff <= args.tolerance
    print(f"{len(kills)} SIGKILLs landed (of {args.kills} asked) over {attempts} attempts; "
          f"final step {final['step']} of {args.steps}; max |weight difference| to the "
          f"uninterrupted run {diff:.3g} (allowed {args.tolerance:g}): {'OK' if ok else 'FAILED'}")
    if args.json:
        args.json.write_text(json.dumps({
            "kills_requested": args.kills, "kills": [asdict(k) for k in kills],
            "attempts": attempts, "final_step": final["step"], "steps": args.steps,
            "max_abs_difference": diff, "ok": ok}, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
