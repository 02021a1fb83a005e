"""The resolved training configuration: a recipe (``training/recipes/*.json``) overridden by
command-line flags, with the learning rate scaled linearly with the global batch size
(Goyal et al. 2017; the recipes' base rates are those of He et al. 2015)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from keras_resnet.training.architecture import resolve_architecture
from keras_resnet.training.errors import UsageError
from keras_resnet.training.recipes import load_recipe
from keras_resnet.training.schedules import RecipeSchedule

# Fields that must match for a model dir's checkpoints to be resumed.
# The seed decides the data order, so a run resumed with another seed would not continue the
# same run.
IDENTITY_FIELDS = ("model", "dataset", "input_size", "recipe", "recipe_version", "batch_size",
                   "base_learning_rate", "weight_decay", "decay_norm_and_bias", "label_smoothing",
                   "optimizer", "preprocessing", "augmentation", "flip", "zero_init_residual",
                   "schedule", "warmup", "seed", "architecture")
#: Inclusive ranges of the integer flags (beyond them a run could not fit in memory or time).
INT_RANGES = {"steps": (1, 10**9), "batch_size": (1, 2**20), "checkpoint_every": (1, 10**9),
              "keep_checkpoints": (1, 10**4), "eval_every": (0, 10**9),
              "eval_examples": (1, 10**9), "log_every": (1, 10**9),
              "mean_images": (1, 10**8), "shuffle_buffer": (1, 10**8),
              "warmup_steps": (0, 10**9), "seed": (0, 2**32 - 1), "threads": (0, 1024)}


@dataclass
class TrainConfig:
    """Everything one training run needs, JSON-serialisable (written to ``run_config.json``)."""

    model: str
    dataset: str
    model_dir: str
    recipe: str
    recipe_version: int
    batch_size: int
    base_batch_size: int
    base_learning_rate: float
    input_size: int
    steps: int | None
    epochs: float | None
    recipe_steps: int | None
    optimizer: dict[str, Any]
    weight_decay: float
    decay_norm_and_bias: bool
    schedule: dict[str, Any]
    warmup: dict[str, Any] | None
    label_smoothing: float
    zero_init_residual: bool
    augmentation: dict[str, Any]
    preprocessing: str
    flip: bool | None
    data_dir: str | None = None
    download: bool = False
    strategy: str = "auto"
    precision: str = "auto"
    jit_compile: str = "auto"  # auto | on | off (training/compilation.py)
    batch_norm: str = "fused"
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    eval_every: int = 0
    eval_examples: int | None = None
    seed: int | None = None
    log_every: int = 10
    cache: bool = False
    shuffle_buffer: int = 10000
    mean_images: int = 10000
    eval_only: bool = False
    architecture: dict[str, Any] = field(default_factory=dict)  # keras_resnet builder options
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def learning_rate(self) -> float:
        """Peak rate: the recipe's rate scaled linearly by ``batch_size / base_batch_size``."""
        return self.base_learning_rate * self.batch_size / self.base_batch_size

    def total_steps(self, num_train_examples: int) -> int:
        """``--steps``, or ``--epochs`` converted with the global batch size."""
        if self.steps is not None:
            return self.steps
        return max(1, math.ceil(self.epochs * num_train_examples / self.batch_size))

    def make_schedule(self, total_steps: int) -> RecipeSchedule:
        """The schedule stretched to ``total_steps``: step boundaries keep their fraction of
        the recipe's length (CIFAR: 32k and 48k of 64k = 50 % and 75 %)."""
        sched = self.schedule
        boundaries: tuple[int, ...] = ()
        if sched["type"] == "step":
            length = self.recipe_steps or total_steps
            boundaries = tuple(round(b / length * total_steps) for b in sched["boundaries"])
        warmup_kind, warmup_steps, warmup_lr = "none", 0, 0.0
        if self.warmup:
            warmup_kind = self.warmup["type"]
            if "steps" in self.warmup:
                warmup_steps = min(int(self.warmup["steps"]), total_steps // 10)
            else:
                warmup_steps = round(float(self.warmup.get("fraction", 0.0)) * total_steps)
            warmup_lr = float(self.warmup.get("learning_rate", 0.0)) * self.batch_size / self.base_batch_size
        return RecipeSchedule(self.learning_rate, total_steps, sched["type"], boundaries,
                              float(sched.get("factor", 0.1)),
                              float(sched.get("final_fraction", 0.0)), warmup_kind, warmup_steps,
                              warmup_lr)

    def identity(self) -> dict[str, Any]:
        """The fields a resumed run must share with the checkpoints it resumes."""
        data = asdict(self)
        return {k: data[k] for k in IDENTITY_FIELDS}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _positive(name: str, value: float | None) -> None:
    if value is not None and value <= 0:
        raise UsageError(f"{name} must be positive, got {value}")


def check_ranges(args: Any) -> None:
    """Every numeric flag finite and within its range (:data:`INT_RANGES`), else UsageError
    naming the flag and what is allowed."""
    for flag in ("epochs", "learning_rate", "weight_decay", "label_smoothing"):
        value = getattr(args, flag, None)
        if value is not None and not math.isfinite(value):
            raise UsageError(f"--{flag.replace('_', '-')} must be a finite number, got {value}")
    if args.epochs is not None and args.epochs > 10**6:
        raise UsageError(f"--epochs must be at most 1000000, got {args.epochs}")
    for flag, (low, high) in INT_RANGES.items():
        value = getattr(args, flag, None)
        if value is not None and not low <= value <= high:
            raise UsageError(f"--{flag.replace('_', '-')} must be in {low}..{high}, got {value}")


def _check_flags(args: Any) -> None:
    """Signs, ranges and exclusions of the numeric flags, before any recipe value is used."""
    if args.steps is not None and args.epochs is not None:
        raise UsageError("give --steps or --epochs, not both")
    for flag in ("steps", "epochs", "batch_size", "input_size", "checkpoint_every",
                 "learning_rate", "log_every", "mean_images"):
        _positive("--" + flag.replace("_", "-"), getattr(args, flag, None))
    for flag in ("eval_every", "eval_examples", "weight_decay", "label_smoothing"):
        value = getattr(args, flag, None)
        if value is not None and value < 0:
            raise UsageError(f"--{flag.replace('_', '-')} must not be negative, got {value}")
    if args.label_smoothing is not None and args.label_smoothing >= 1:
        raise UsageError(f"--label-smoothing must be below 1, got {args.label_smoothing}")
    if args.keep_checkpoints < 1:
        raise UsageError("--keep-checkpoints must be at least 1")
    check_ranges(args)


def resolve_config(args: Any, family: str) -> TrainConfig:
    """Merge the recipe chosen by ``--recipe`` (default: ``cifar`` for CIFAR-family models,
    ``imagenet`` otherwise) with the flags in ``args`` (an argparse namespace)."""
    recipe_name = args.recipe or ("cifar" if family == "cifar" else "imagenet")
    recipe = load_recipe(recipe_name)
    _check_flags(args)
    steps, epochs = args.steps, args.epochs
    if steps is None and epochs is None:
        steps, epochs = recipe.get("steps"), recipe.get("epochs")
        if steps is not None:
            epochs = None
    warmup = recipe.get("warmup")
    if warmup and warmup.get("models") and args.model not in warmup["models"]:
        warmup = None
    if args.warmup_steps is not None:
        warmup = ({"type": (warmup or {}).get("type", "linear"), "steps": args.warmup_steps,
                   "learning_rate": (warmup or {}).get("learning_rate", 0.0)}
                  if args.warmup_steps > 0 else None)
    input_size = args.input_size or recipe.get("input_size")
    if input_size is None:
        input_size = 32 if family == "cifar" else 224
    if not 8 <= input_size <= 1024:
        raise UsageError(f"--input-size must be in 8..1024, got {input_size}")
    optimizer = dict(recipe["optimizer"])
    if optimizer.get("name") != "sgd":
        raise UsageError(f"recipe optimizer {optimizer.get('name')!r} is not supported (sgd)")
    return TrainConfig(
        model=args.model, dataset=args.dataset, model_dir=args.model_dir, recipe=recipe["name"],
        recipe_version=int(recipe["version"]), batch_size=args.batch_size or recipe["batch_size"],
        base_batch_size=int(recipe["base_batch_size"]),
        base_learning_rate=args.learning_rate or float(optimizer["learning_rate"]),
        input_size=int(input_size), steps=steps, epochs=epochs,
        recipe_steps=recipe.get("steps"), optimizer=optimizer,
        weight_decay=(float(recipe["weight_decay"]) if args.weight_decay is None
                      else args.weight_decay),
        decay_norm_and_bias=bool(recipe.get("decay_norm_and_bias", True)),
        schedule=dict(recipe["schedule"]), warmup=warmup,
        label_smoothing=(float(recipe.get("label_smoothing", 0.0)) if args.label_smoothing is None
                         else args.label_smoothing),
        zero_init_residual=bool(recipe.get("zero_init_residual", False)
                                if getattr(args, "zero_init_residual", None) is None
                                else args.zero_init_residual),
        architecture=resolve_architecture(args, args.model),
        augmentation=dict(recipe["augmentation"]), preprocessing=recipe["preprocessing"],
        flip=args.flip, data_dir=args.data_dir, download=args.download, strategy=args.strategy,
        precision=args.precision, jit_compile=args.jit_compile, batch_norm=args.batch_norm,
        checkpoint_every=args.checkpoint_every, keep_checkpoints=args.keep_checkpoints,
        eval_every=args.eval_every or 0,
        eval_examples=args.eval_examples, seed=args.seed, log_every=args.log_every,
        cache=args.cache, shuffle_buffer=args.shuffle_buffer,
        mean_images=args.mean_images, eval_only=args.eval_only)
