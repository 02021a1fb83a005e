"""Which trainer runs each experiment is made of.

* ``degradation`` (Figures 1 and 6): plain-N against ResNet-N, N in ``--depths``.
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
#: The registry's CIFAR ResNets (section 4.2); a plain net is the same model with ``--plain``.
CIFAR_DEPTHS = (20, 32, 44, 56, 110, 1202)
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
    if plain:
        return RunSpec(f"plain{depth}", f"plain-{depth}", "plain", f"resnet{depth}", depth, seed,
                       ("--plain",))
    return RunSpec(f"resnet{depth}", f"ResNet-{depth}", "resnet", f"resnet{depth}", depth, seed)


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
    """Validate ``--depths``: CIFAR depths of the registry, no repeats; not for shortcuts."""
    if depths is None:
        return None
    if experiment == "shortcuts":
        raise UsageError("--depths does not apply to the shortcuts experiment; choose the "
                         "net with --model")
    bad = [d for d in depths if d not in CIFAR_DEPTHS]
    if bad:
        raise UsageError(f"--depths {bad[0]} is not a CIFAR ResNet depth; choose from "
                         f"{', '.join(map(str, CIFAR_DEPTHS))}")
    if len(set(depths)) != len(depths):
        raise UsageError("--depths lists a depth twice")
    return tuple(depths)
