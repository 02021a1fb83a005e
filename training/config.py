"""The resolved training configuration: small nested pieces built from a recipe
(``training/recipes/*.json``) plus overrides, with the learning rate scaled linearly with the
global batch size (Goyal et al. 2017; the recipes' base rates are those of He et al. 2015).

Each default is written once: settings a recipe gives (optimizer, schedule, augmentation, ...)
come from the recipe, with the dataclass default standing in where a recipe may leave a key
out; run settings (cadence, strategy, outputs) have their default on the dataclass field.

One name per setting: a field's name is the command line's flag with underscores
(``--learning-rate``), the keyword of :func:`keras_resnet.training.train`
(``learning_rate=``) and the key in ``run_config.json``; field names are unique over the
pieces (:data:`PIECE_OF`), so overrides are ``{"learning_rate": 0.05, ...}``. The one
setting that is no field, ``warmup_steps``, rewrites the recipe's ``warmup``.

``run_config.json`` keeps the flat view (:meth:`TrainConfig.to_json`); model dirs written
before the names were unified (``base_learning_rate``) are read through
:func:`upgrade_identity`, so they resume (or are refused) exactly as before.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from keras_resnet.training.errors import UsageError
from keras_resnet.training.recipes import load_recipe

if TYPE_CHECKING:  # the schedule module imports TensorFlow: only when a run builds one
    from keras_resnet.training.schedules import RecipeSchedule


@dataclass(frozen=True)
class ModelConfig:
    """The network: zoo name, image side, builder options, input normalisation and the
    training-time batch norm kernel (``model.keras`` always uses Keras' layer)."""

    model: str  # zoo name, or "in-code" for a network built in code (then ``network`` is set)
    input_size: int
    preprocessing: str = "per_pixel_mean"
    zero_init_residual: bool = False
    architecture: dict[str, Any] = field(default_factory=dict)  # keras_resnet builder options
    batch_norm: str = "fused"
    weights: dict[str, str] | None = None  # fine-tuning: {"source", "sha256"} of --weights
    freeze: str | None = None  # fine-tuning: --freeze (None: nothing frozen)
    network: dict[str, Any] | None = None  # a network built in code: {"sha256", "output"}
    qat: str | None = None  # quantization-aware training: "int8" (training/qat.py)
    qat_scheme: str | None = None  # its keras_resnet.quantization.QAT_SCHEMES key

    @property
    def name(self) -> str:
        """The network's name (the ``model`` setting)."""
        return self.model


@dataclass(frozen=True)
class DataConfig:
    """The dataset and its input pipeline."""

    augmentation: dict[str, Any]
    dataset: str = "digits"
    data_dir: str | None = None
    download: bool = False
    flip: bool | None = None  # None: the dataset's own choice (off for digits)
    cache: bool = False
    shuffle_buffer: int = 10000
    mean_images: int = 10000
    eval_examples: int | None = None
    # In-memory data (train() with arrays or a tf.data.Dataset): the range of the pixels the
    # arrays hold, and the per-channel mean/std they were normalised with (None: raw pixels).
    # Source names always give RGB pixels 0..255 and leave these None.
    input_range: list[float] | None = None
    mean: list[float] | None = None
    std: list[float] | None = None


@dataclass(frozen=True)
class OptimConfig:
    """SGD with momentum and coupled L2 decay (He et al. 2015 sec. 3.4), at ``batch_size``."""

    optimizer: dict[str, Any]
    batch_size: int
    base_batch_size: int
    learning_rate: float  # at base_batch_size; scaled linearly to batch_size
    weight_decay: float
    decay_norm_and_bias: bool = True
    label_smoothing: float = 0.0

    @property
    def lr_scale(self) -> float:
        """Linear scaling: ``batch_size / base_batch_size`` (Goyal et al. 2017)."""
        return self.batch_size / self.base_batch_size

    @property
    def peak_learning_rate(self) -> float:
        """Peak rate: ``learning_rate`` scaled linearly by :attr:`lr_scale`."""
        return self.learning_rate * self.lr_scale


@dataclass(frozen=True)
class ScheduleConfig:
    """The learning-rate schedule (the recipe's ``schedule`` object), warm-up, and the
    recipe's own length (its step boundaries are fractions of it)."""

    schedule: dict[str, Any]
    warmup: dict[str, Any] | None = None
    recipe_steps: int | None = None
    qat_observe_fraction: float | None = None  # --qat: share of steps observing ranges

    def build(self, total_steps: int, optim: OptimConfig) -> RecipeSchedule:
        """The schedule stretched to ``total_steps``: step boundaries keep their fraction of
        the recipe's length (CIFAR: 32k and 48k of 64k = 50 % and 75 %)."""
        from keras_resnet.training.schedules import RecipeSchedule

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
            warmup_lr = float(self.warmup.get("learning_rate", 0.0)) * optim.lr_scale
        return RecipeSchedule(optim.peak_learning_rate, total_steps, sched["type"], boundaries,
                              float(sched.get("factor", 0.1)),
                              float(sched.get("final_fraction", 0.0)), warmup_kind, warmup_steps,
                              warmup_lr)


@dataclass(frozen=True)
class RunConfig:
    """Length, cadence, placement and reproducibility of the run."""

    steps: int | None = None
    epochs: float | None = None
    strategy: str = "auto"
    precision: str = "auto"
    jit_compile: str = "auto"  # auto | on | off (training/compilation.py)
    seed: int | None = None
    checkpoint_every: int = 500
    eval_every: int = 0  # 0: only at the end
    log_every: int = 10
    eval_only: bool = False


@dataclass(frozen=True)
class OutputConfig:
    """Where the run writes, and how many checkpoints it keeps."""

    model_dir: str
    keep_checkpoints: int = 3


PIECES = {"model": ModelConfig, "data": DataConfig, "optim": OptimConfig,
          "schedule": ScheduleConfig, "run": RunConfig, "output": OutputConfig}
#: The piece each setting (field) belongs to; a setting's name is unique over the pieces.
PIECE_OF = {f.name: piece for piece, cls in PIECES.items() for f in fields(cls)}
#: Settings that are no field: they rewrite one (``warmup_steps`` the recipe's ``warmup``).
DERIVED_SETTINGS = ("warmup_steps",)
#: ``run_config.json`` keys of earlier versions and their names now.
RENAMED_KEYS = {"base_learning_rate": "learning_rate"}
#: Fields that must match for a model dir's checkpoints to be resumed. The seed decides the
#: data order, so a run resumed with another seed would not continue the same run.
#: Quantization-aware training (``qat``...) and fine-tuning (``weights``: source and SHA-256
#: of --weights; ``freeze``) come early, so a mismatch names them first.
IDENTITY_FIELDS = ("model", "network", "qat", "qat_scheme", "qat_observe_fraction", "weights",
                   "freeze", "dataset", "input_range", "mean", "std", "input_size", "recipe", "recipe_version", "batch_size",
                   "learning_rate", "weight_decay", "decay_norm_and_bias", "label_smoothing",
                   "optimizer", "preprocessing", "augmentation", "flip", "zero_init_residual",
                   "schedule", "warmup", "seed", "architecture")


def upgrade_identity(recorded: dict[str, Any]) -> dict[str, Any]:
    """A recorded identity (or flat config) with earlier key names renamed
    (:data:`RENAMED_KEYS`); fields added since (``network``, ``input_range``...) read as
    None, their value for every run of that time."""
    return {RENAMED_KEYS.get(k, k): v for k, v in recorded.items()}


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs, as pieces; JSON-serialisable."""

    recipe: str
    recipe_version: int
    model: ModelConfig
    data: DataConfig
    optim: OptimConfig
    schedule: ScheduleConfig
    run: RunConfig
    output: OutputConfig

    @property
    def peak_learning_rate(self) -> float:
        """The schedule's peak rate (``learning_rate`` scaled to the batch size)."""
        return self.optim.peak_learning_rate

    def total_steps(self, num_train_examples: int) -> int:
        """``--steps``, or ``--epochs`` converted with the global batch size."""
        if self.run.steps is not None:
            return self.run.steps
        return max(1, math.ceil(self.run.epochs * num_train_examples / self.optim.batch_size))

    def make_schedule(self, total_steps: int) -> RecipeSchedule:
        return self.schedule.build(total_steps, self.optim)

    def to_json(self) -> dict[str, Any]:
        """The flat view: every setting by its name."""
        flat: dict[str, Any] = {"recipe": self.recipe, "recipe_version": self.recipe_version}
        for piece in PIECES:
            flat.update(asdict(getattr(self, piece)))
        return flat

    def identity(self) -> dict[str, Any]:
        """The fields a resumed run must share with the checkpoints it resumes."""
        flat = self.to_json()
        return {k: flat[k] for k in IDENTITY_FIELDS}


def _recipe_values(recipe: dict[str, Any], model: str, family: str) -> dict[str, Any]:
    """The recipe's keys as settings (the recipe's ``steps``/``epochs`` and warm-up
    resolved: a warm-up listing ``models`` applies to those models only)."""
    steps, epochs = recipe.get("steps"), recipe.get("epochs")
    warmup = recipe.get("warmup")
    if warmup and warmup.get("models") and model not in warmup["models"]:
        warmup = None
    values = {"steps": steps, "epochs": None if steps is not None else epochs,
              "warmup": warmup, "recipe_steps": steps, "schedule": dict(recipe["schedule"]),
              "learning_rate": float(recipe["optimizer"]["learning_rate"]),
              "optimizer": dict(recipe["optimizer"]),
              "input_size": recipe.get("input_size") or (32 if family == "cifar" else 224),
              "augmentation": dict(recipe["augmentation"])}
    kinds = {"batch_size": int, "base_batch_size": int, "weight_decay": float,
             "decay_norm_and_bias": bool, "label_smoothing": float, "preprocessing": str,
             "zero_init_residual": bool, "qat_observe_fraction": float}
    for key, kind in kinds.items():
        if key in recipe:
            values[key] = kind(recipe[key])
    return values


def _with_warmup_steps(warmup: dict[str, Any] | None, steps: int) -> dict[str, Any] | None:
    """The recipe's warm-up (kind and rate) over ``steps`` steps; 0 disables warm-up."""
    if steps <= 0:
        return None
    return {"type": (warmup or {}).get("type", "linear"), "steps": steps,
            "learning_rate": (warmup or {}).get("learning_rate", 0.0)}


def _merge(values: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` over ``values``; ``steps`` or ``epochs`` replaces both, and
    ``warmup_steps`` rewrites the warm-up."""
    merged = dict(values)
    if "steps" in overrides or "epochs" in overrides:
        merged["steps"] = merged["epochs"] = None
    rest = dict(overrides)
    if "warmup_steps" in rest:
        merged["warmup"] = _with_warmup_steps(merged.get("warmup"), rest.pop("warmup_steps"))
    for key in rest:
        if key not in PIECE_OF:
            raise ValueError(f"unknown configuration override {key!r}")
    merged.update(rest)
    return merged


def build_config(recipe: dict[str, Any], overrides: dict[str, Any], family: str) -> TrainConfig:
    """The configuration of ``recipe`` (a loaded recipe) with ``overrides`` applied;
    ``overrides`` (settings by name) must hold ``model`` and ``model_dir``."""
    if recipe["optimizer"].get("name") != "sgd":
        raise UsageError(f"recipe optimizer {recipe['optimizer'].get('name')!r} is not "
                         "supported (sgd)")
    values = _merge(_recipe_values(recipe, overrides["model"], family), overrides)
    grouped: dict[str, dict[str, Any]] = {piece: {} for piece in PIECES}
    for key, value in values.items():
        grouped[PIECE_OF[key]][key] = value
    size = int(grouped["model"]["input_size"])
    if not 8 <= size <= 1024:
        raise UsageError(f"--input-size must be in 8..1024, got {size}")
    grouped["model"]["input_size"] = size
    pieces = {piece: cls(**grouped[piece]) for piece, cls in PIECES.items()}
    return TrainConfig(recipe=recipe["name"], recipe_version=int(recipe["version"]), **pieces)


def resolve_config(recipe_name: str | None, overrides: dict[str, Any], family: str) -> TrainConfig:
    """Load the recipe ``recipe_name`` (default: ``cifar`` for CIFAR-family models,
    ``imagenet`` otherwise) and apply ``overrides``."""
    recipe = load_recipe(recipe_name or ("cifar" if family == "cifar" else "imagenet"))
    return build_config(recipe, overrides, family)


def with_overrides(cfg: TrainConfig, **pieces: dict[str, Any]) -> TrainConfig:
    """A copy of ``cfg`` with fields of some pieces replaced: ``with_overrides(cfg,
    run={"steps": 4})``."""
    return replace(cfg, **{p: replace(getattr(cfg, p), **v) for p, v in pieces.items()})


def default_of(setting: str) -> Any:
    """The dataclass default of ``setting`` (for help texts)."""
    return next(f.default for f in fields(PIECES[PIECE_OF[setting]]) if f.name == setting)
