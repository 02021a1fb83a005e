"""Which trainer runs each experiment is made of.

* ``degradation`` (Figures 1 and 6): plain-N against ResNet-N, N in ``--depths`` (any
  6n + 2; depths outside Table 6 are marked as not the paper's in the results).
* ``shortcuts`` (Table 3): one net with shortcut options A, B and C (section 3.3).
* ``depth`` (Table 6): ResNet-20/32/44/56/110 (1202 when asked).
* ``responses`` (Figure 7): plain-20/56 and ResNet-20/56/110, then their layer responses.

Every configuration is repeated for ``--seeds`` seeds; a run lives in ``OUT/<config>-seed<S>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from keras_resnet.training.errors import UsageError

EXPERIMENTS = ("degradation", "shortcuts", "depth", "responses")
#: The registry's CIFAR ResNets (section 4.2, Table 6's depths); a plain net is the same model
#: with ``--plain``. Any other CIFAR depth 6n + 2 (8, 14, ...) is ``resnet20`` with ``--depth``.
CIFAR_DEPTHS = (20, 32, 44, 56, 110, 1202)
#: The base model of a depth the registry does not name.
OTHER_DEPTH_BASE = "resnet20"
DEFAULT_DEPTHS = {"degradation": (20, 32, 44, 56), "depth": (20, 32, 44, 56, 110)}
#: Figure 7's nets: (plain?, depth).
FIGURE7_NETS = ((True, 20), (True, 56), (False, 20), (False, 56), (False, 110))
SHORTCUT_OPTIONS = ("A", "B", "C")


@dataclass(frozen=True)
class RunSpec:
    """One trainer run of an experiment."""

    config: str  # shared by the seeds of one configuration, e.g. "plain20"
    label: str  # legend and table label, e.g. "plain-20", "ResNet-20", "ResNet-20 (A)"
    group: str  # "plain" or "resnet"; for shortcuts the option "A", "B" or "C"
    model: str  # registry name
    depth: int
    seed: int
    flags: tuple[str, ...] = ()  # architecture flags for keras-resnet-train

    @property
    def name(self) -> str:
        """The run's folder in ``OUT``."""
        return f"{self.config}-seed{self.seed}"

    def trainer_argv(self, out: Path, common: list[str]) -> list[str]:
        """The ``keras-resnet-train`` command line of this run."""
        return ["--model", self.model, "--model-dir", str(out / self.name),
                "--seed", str(self.seed), *self.flags, *common]


def _net(plain: bool, depth: int, seed: int) -> RunSpec:
    model, flags = f"resnet{depth}", ()
    if depth not in CIFAR_DEPTHS:
        model, flags = OTHER_DEPTH_BASE, ("--depth", str(depth))
    if plain:
        return RunSpec(f"plain{depth}", f"plain-{depth}", "plain", model, depth, seed,
                       (*flags, "--plain"))
    return RunSpec(f"resnet{depth}", f"ResNet-{depth}", "resnet", model, depth, seed, flags)


def _configs(experiment: str, depths: tuple[int, ...] | None) -> list[tuple]:
    """``(plain, depth)`` pairs, or ``("shortcut", option)`` for the shortcuts experiment."""
    if experiment == "degradation":
        return [(True, d) for d in depths] + [(False, d) for d in depths]
    if experiment == "depth":
        return [(False, d) for d in depths]
    if experiment == "responses":
        if depths is None:
            return list(FIGURE7_NETS)
        return [(True, d) for d in depths] + [(False, d) for d in depths]
    return [("shortcut", option) for option in SHORTCUT_OPTIONS]


def plan_runs(experiment: str, *, depths: tuple[int, ...] | None, seeds: int, base_seed: int,
              model: str = "resnet20", model_depth: int = 20) -> list[RunSpec]:
    """The runs of ``experiment``, seed by seed (all configurations of the first seed first,
    so that an interrupted experiment has one complete set early)."""
    if experiment not in EXPERIMENTS:
        raise UsageError(f"unknown experiment {experiment!r}; choose {', '.join(EXPERIMENTS)}")
    if depths is None and experiment in DEFAULT_DEPTHS:
        depths = DEFAULT_DEPTHS[experiment]
    runs = []
    for seed in range(base_seed, base_seed + seeds):
        for kind, value in _configs(experiment, depths):
            if kind == "shortcut":
                runs.append(RunSpec(f"{model}-{value}", f"option {value}", value, model,
                                    model_depth, seed, ("--shortcut", value)))
            else:
                runs.append(_net(kind, value, seed))
    return runs


def check_depths(experiment: str, depths: list[int] | None) -> tuple[int, ...] | None:
    """Validate ``--depths``: any CIFAR depth the zoo builds (6n + 2: 8, 14, 20, ...; the
    paper's are 20, 32, 44, 56, 110 and 1202), no repeats; not for shortcuts."""
    if depths is None:
        return None
    if experiment == "shortcuts":
        raise UsageError("--depths does not apply to the shortcuts experiment; choose the "
                         "net with --model")
    bad = [d for d in depths if d < 8 or (d - 2) % 6]
    if bad:
        raise UsageError(f"--depths {bad[0]} is not a CIFAR ResNet depth; choose 6n + 2 "
                         f"(8, 14, 20, ...; the paper's: {', '.join(map(str, CIFAR_DEPTHS))})")
    if len(set(depths)) != len(depths):
        raise UsageError("--depths lists a depth twice")
    return tuple(depths)
