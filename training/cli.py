"""Command line: ``keras-resnet-train`` (``python -m keras_resnet.training``) and ``keras-resnet-eval``.

Bad input (unknown model/dataset/recipe, unavailable data, indivisible batch size, invalid
``TF_CONFIG``, a model dir of a different run) prints one ``error: ...`` line on stderr and
exits with code 2, before any model is built or dataset loaded.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from keras_resnet.training.architecture import add_architecture_flags, resolve_architecture
from keras_resnet.training.compilation import JIT_CHOICES
from keras_resnet.training.config import (
    DERIVED_SETTINGS,
    PIECE_OF,
    TrainConfig,
    default_of,
    resolve_config,
    with_overrides,
)
from keras_resnet.training.errors import UsageError
from keras_resnet.training.precision import PRECISIONS
from keras_resnet.training.qat import (
    add_qat_flags,
    check_float_weights,
    default_recipe,
    inherit_input_size,
    inherited_architecture,
    resolve_qat,
)
from keras_resnet.training.strategy import STRATEGIES

from keras_resnet.console import Parser, native_stderr_silenced, require_extra, run_command

#: Flags that are no configuration field: how the run is made, not what it is.
RUN_ONLY_FLAGS = ("threads", "recipe", "weights", "freeze")
#: Inclusive ranges of the integer flags (beyond them a run could not fit in memory or time).
INT_RANGES = {"steps": (1, 10**9), "batch_size": (1, 2**20), "checkpoint_every": (1, 10**9),
              "keep_checkpoints": (1, 10**4), "eval_every": (0, 10**9),
              "eval_examples": (1, 10**9), "log_every": (1, 10**9),
              "mean_images": (1, 10**8), "shuffle_buffer": (1, 10**8),
              "warmup_steps": (0, 10**9), "seed": (0, 2**32 - 1), "threads": (0, 1024)}


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def check_ranges(args: Any) -> None:
    """Every numeric flag finite and within its range (:data:`INT_RANGES`), else UsageError
    naming the flag and what is allowed."""
    for dest in ("epochs", "learning_rate", "weight_decay", "label_smoothing"):
        value = getattr(args, dest, None)
        if value is not None and not math.isfinite(value):
            raise UsageError(f"{_flag(dest)} must be a finite number, got {value}")
    if args.epochs is not None and args.epochs > 10**6:
        raise UsageError(f"--epochs must be at most 1000000, got {args.epochs}")
    for dest, (low, high) in INT_RANGES.items():
        value = getattr(args, dest, None)
        if value is not None and not low <= value <= high:
            raise UsageError(f"{_flag(dest)} must be in {low}..{high}, got {value}")


def check_flags(args: Any) -> None:
    """Signs, ranges and exclusions of the numeric flags, before any recipe value is used."""
    if args.steps is not None and args.epochs is not None:
        raise UsageError("give --steps or --epochs, not both")
    for dest in ("steps", "epochs", "batch_size", "input_size", "checkpoint_every",
                 "learning_rate", "log_every", "mean_images"):
        value = getattr(args, dest, None)
        if value is not None and value <= 0:
            raise UsageError(f"{_flag(dest)} must be positive, got {value}")
    for dest in ("eval_every", "eval_examples", "weight_decay", "label_smoothing"):
        value = getattr(args, dest, None)
        if value is not None and value < 0:
            raise UsageError(f"{_flag(dest)} must not be negative, got {value}")
    if args.label_smoothing is not None and args.label_smoothing >= 1:
        raise UsageError(f"--label-smoothing must be below 1, got {args.label_smoothing}")
    if args.keep_checkpoints is not None and args.keep_checkpoints < 1:
        raise UsageError("--keep-checkpoints must be at least 1")
    check_ranges(args)


def overrides_from_args(args: argparse.Namespace,
                        architecture: dict[str, Any] | None = None) -> dict[str, Any]:
    """``{setting: value}`` for each configuration flag given (a flag's name is its
    setting's), and the network's full builder options (``architecture``) from the network
    flags (or as given: ``{}`` for a network built in code)."""
    given = {dest: value for dest, value in vars(args).items()
             if value is not None and dest not in RUN_ONLY_FLAGS
             and (dest in PIECE_OF or dest in DERIVED_SETTINGS)}
    if architecture is None:
        architecture = resolve_architecture(args, args.model)
    return {**given, "architecture": architecture}


def config_from_args(args: argparse.Namespace, family: str,
                     architecture: dict[str, Any] | None = None) -> TrainConfig:
    """The run's configuration: the recipe ``--recipe`` picks, the flags as overrides.
    Raises :class:`UsageError` naming the flag on bad input."""
    from keras_resnet.training.recipes import load_recipe

    recipe = args.recipe or default_recipe(args) or (
        "finetune" if getattr(args, "weights", None) else None)
    load_recipe(recipe or ("cifar" if family == "cifar" else "imagenet"))  # errors first
    inherit_input_size(args)
    check_flags(args)
    return resolve_qat(resolve_config(recipe, overrides_from_args(args, architecture), family))


def add_finetune_flags(p: argparse.ArgumentParser) -> None:
    """``--weights`` and ``--freeze`` (see :mod:`keras_resnet.training.finetune`)."""
    g = p.add_argument_group("fine-tuning (default recipe with --weights: finetune)")
    g.add_argument("--weights", help="start from pretrained weights: imagenet | timm/NAME | a "
                                     ".safetensors, .keras, .weights.h5 or .h5 file | another "
                                     "run's model dir; loaded at a fresh start only")
    g.add_argument("--freeze", help="what stays fixed (batch norm in inference mode): none | "
                                    "stem | stage1..stage4 (stem and stages up to N) | backbone "
                                    "(all but the classifier)")


def add_budget_flags(p: argparse.ArgumentParser) -> None:
    """The recipe, length, batch and image-size flags the trainer and the experiments share
    (each run of an experiment is a trainer run)."""
    p.add_argument("--recipe", help="cifar | imagenet | modern | path to a recipe .json "
                                    "(default: cifar for CIFAR-family models, else imagenet)")
    p.add_argument("--steps", type=int, help="training steps (overrides the recipe)")
    p.add_argument("--epochs", type=float, help="training epochs (instead of --steps)")
    p.add_argument("--batch-size", type=int, help="global batch size over all replicas")
    p.add_argument("--input-size", type=int, help="image side in pixels")


def build_train_parser() -> argparse.ArgumentParser:
    p = Parser(prog="keras-resnet-train",
                description="Train a keras_resnet model with one tf.distribute loop; the "
                            "command-line mirror of keras_resnet.training.train(), whose "
                            "keywords are these flags with underscores (see "
                            "docs/training.md).")
    p.add_argument("--model", required=True, help="model name (keras_resnet.list_models())")
    p.add_argument("--dataset",
                   help="digits (default, offline) | synthetic | cifar10 | cifar100 | "
                        "imagenet2012 | imagenette | tfds:NAME | folder:PATH")
    p.add_argument("--data-dir", help="tensorflow-datasets data dir")
    p.add_argument("--download", action="store_true", default=None,
                   help="let tensorflow-datasets download and prepare a missing dataset")
    add_budget_flags(p)
    p.add_argument("--learning-rate", type=float,
                   help="base learning rate at the recipe's base batch size (scaled linearly)")
    p.add_argument("--weight-decay", type=float, help="L2 weight decay (coupled)")
    p.add_argument("--label-smoothing", type=float, help="label smoothing")
    p.add_argument("--warmup-steps", type=int, help="warm-up steps (0 disables warm-up)")
    flip = p.add_mutually_exclusive_group()
    flip.add_argument("--flip", dest="flip", action="store_true", default=None,
                      help="random horizontal flips (default: on, off for digits)")
    flip.add_argument("--no-flip", dest="flip", action="store_false")
    p.add_argument("--model-dir", required=True, help="output and checkpoint folder")
    p.add_argument("--strategy", choices=STRATEGIES,
                   help="auto (default) picks from the devices and TF_CONFIG")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="auto (default): mixed_float16 on GPUs, mixed_bfloat16 on TPUs and bf16 CPUs")
    p.add_argument("--jit-compile", choices=JIT_CHOICES,
                   help="compile the forward/backward pass with XLA: auto (default) decides "
                        "from the device, precision and strategy (docs/training.md)")
    p.add_argument("--jit", dest="jit_compile", action="store_const", const="on",
                   help=argparse.SUPPRESS)  # the earlier spelling of --jit-compile on
    p.add_argument("--batch-norm", choices=("fused", "keras"),
                   help="training-time batch norm kernel: TensorFlow's fused op (default, same "
                        "maths, faster) or Keras' layer as is; model.keras always uses Keras' layer")
    p.add_argument("--checkpoint-every", type=int, help=f"steps between checkpoints ({default_of('checkpoint_every')})")
    p.add_argument("--keep-checkpoints", type=int, help=f"checkpoints kept ({default_of('keep_checkpoints')})")
    p.add_argument("--eval-every", type=int,
                   help="steps between evaluations (0: only at the end)")
    p.add_argument("--eval-examples", type=int, help="evaluate on the first N test images only")
    p.add_argument("--eval-only", action="store_true", default=None,
                   help="evaluate the latest checkpoint in --model-dir and exit")
    p.add_argument("--seed", type=int,
                   help="seed for weights, data order and augmentation; also makes ops "
                        "deterministic")
    add_architecture_flags(p)
    add_finetune_flags(p)
    add_qat_flags(p)
    p.add_argument("--log-every", type=int, help=f"steps between log lines ({default_of('log_every')})")
    p.add_argument("--cache", action="store_true", default=None,
                   help="cache the decoded dataset in memory")
    p.add_argument("--shuffle-buffer", type=int, help=f"shuffle buffer size ({default_of('shuffle_buffer')})")
    p.add_argument("--mean-images", type=int,
                   help="training images used for the normalisation statistics "
                        f"({default_of('mean_images')})")
    p.add_argument("--threads", type=int,
                   help="TensorFlow intra/inter-op threads (0: TensorFlow's default)")
    return p


def build_eval_parser() -> argparse.ArgumentParser:
    p = Parser(prog="keras-resnet-eval",
                description="Top-1/top-5 accuracy of a trained model.keras on a test set.")
    p.add_argument("--model-dir", help="a keras-resnet-train --model-dir (uses its model.keras)")
    p.add_argument("--model-file", help="a .keras file (instead of --model-dir)")
    p.add_argument("--dataset", help="dataset (default: the one the model was trained on)")
    p.add_argument("--data-dir", help="tensorflow-datasets data dir")
    p.add_argument("--input-size", type=int, help="image side (default: from labels.json)")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--eval-examples", type=int, help="only the first N test images")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def configure_threads(threads: int) -> None:
    """TensorFlow's intra/inter-op threads (0: its default); kept when it already runs."""
    if threads:
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:
            pass  # TensorFlow already running in this process (called as a library): keep it


def _quiet_tensorflow() -> None:
    """Keep TensorFlow's and absl's informational logs off stderr."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)


def model_family(name: str) -> str:
    """The zoo family (``cifar`` or ``imagenet``) of ``name``; UsageError for other names."""
    import keras_resnet

    if not isinstance(name, str) or name not in keras_resnet.list_models():
        raise UsageError(f"unknown model {name!r}; see keras_resnet.list_models() "
                         f"(e.g. {', '.join(keras_resnet.list_models()[:4])}, ...)")
    return keras_resnet.model_info(name)["family"]


def check_input_size(model: str, size: int) -> None:
    """``size`` at least the zoo network's total stride."""
    import keras_resnet

    least = keras_resnet.model_info(model)["min_input_size"]
    if size < least:
        raise UsageError(f"--input-size {size} is too small for {model}: at least {least} "
                         "(its total stride)")


def settings_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The flags given, as :func:`keras_resnet.training.train`'s keywords."""
    return {dest: value for dest, value in vars(args).items()
            if value is not None and dest not in ("model", "dataset", "model_dir")}


def train_from_args(argv: Sequence[str] | None = None) -> Any:
    """Parse and train through :func:`keras_resnet.training.train`; returns its
    :class:`keras_resnet.training.TrainResult`. Raises :class:`UsageError` on bad input,
    before any model is built or data loaded."""
    return _train(build_train_parser().parse_args(argv))


def _train(args: argparse.Namespace) -> Any:
    from keras_resnet.training.api import train

    return train(args.model, args.dataset or default_of("dataset"), args.model_dir,
                 **settings_from_args(args))


def resolve_weights(args: Any, cfg: TrainConfig) -> tuple[TrainConfig, Any]:
    """Fine-tuning: ``--freeze`` and ``--weights`` checked; the weights' source, digest,
    layout and normalisation put into the model configuration (part of the run's identity)."""
    from keras_resnet.training import finetune

    model = cfg.model
    check_float_weights(args.weights)
    freeze = finetune.check_freeze(args.freeze, model=model.model, weights=args.weights)
    if not args.weights:
        return with_overrides(cfg, model={"freeze": freeze}), None
    ref = finetune.resolve_weights(args.weights, model=model.model, input_size=model.input_size,
                                   recorded=finetune.recorded_weights(cfg.output.model_dir))
    finetune.check_architecture(ref, variant=args.variant, model=model.model)
    return with_overrides(cfg, model={
        "freeze": freeze, "weights": ref.identity(),
        "architecture": inherited_architecture(args, {**model.architecture,
                                                      **ref.architecture}),
        "preprocessing": ref.preprocessing or model.preprocessing}), ref


def run_train(argv: Sequence[str] | None = None) -> int:
    """``keras-resnet-train``: train and return the exit code (143 after SIGTERM)."""
    from keras_resnet.training.loop import SIGTERM_EXIT_CODE

    args = build_train_parser().parse_args(argv)
    result = _train(args)
    if result.metrics.get("stopped"):
        return SIGTERM_EXIT_CODE
    if args.eval_only and result.chief:
        print(json.dumps({k: result.metrics[k] for k in ("step", "eval_top1", "eval_top5",
                                                         "eval_loss", "eval_examples")}))
    return 0


def run_eval(argv: Sequence[str] | None = None) -> int:
    """``keras-resnet-eval``: load ``model.keras`` and report top-1/top-5 on the test split."""
    args = build_eval_parser().parse_args(argv)
    results = evaluate_from_args(argv)
    if args.json:
        print(json.dumps({k: results[k] for k in ("top1", "top5", "examples")}))
    else:
        print(f"{results['model']}: top-1 {results['top1']:.4f} top-5 {results['top5']:.4f} "
              f"on {results['examples']} {results['dataset']} test images")
    return 0


def evaluate_from_args(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """``keras-resnet-eval``'s checks and evaluation: ``{"top1", "top5", "examples",
    "model", "dataset"}``."""
    args = build_eval_parser().parse_args(argv)
    if bool(args.model_dir) == bool(args.model_file):
        raise UsageError("give --model-dir or --model-file")
    for flag, value, low, high in (("--batch-size", args.batch_size, 1, 2**16),
                                   ("--eval-examples", args.eval_examples, 1, 10**9),
                                   ("--input-size", args.input_size, 8, 1024)):
        if value is not None and not low <= value <= high:
            raise UsageError(f"{flag} must be in {low}..{high}, got {value}")
    model_path = Path(args.model_file) if args.model_file else Path(args.model_dir) / "model.keras"
    if not model_path.is_file():
        raise UsageError(f"no model at {str(model_path)!r}")
    info = _run_config(model_path.parent / "run_config.json")
    dataset = args.dataset or info.get("dataset")
    if str(dataset).startswith("in-memory:"):
        raise UsageError("the model was trained on in-memory data: give --dataset (a source "
                         "with its classes)")
    if not dataset:
        raise UsageError("--dataset is needed (no run_config.json next to the model)")
    from keras_resnet.training import data
    from keras_resnet.training.evaluate import evaluate_model

    data.check_dataset_name(dataset)
    results = evaluate_model(model_path, dataset, data_dir=args.data_dir or info.get("data_dir"),
                             input_size=args.input_size, batch_size=args.batch_size,
                             limit=args.eval_examples, augmentation=info.get("augmentation"),
                             contract=_recorded_contract(model_path))
    return {**results, "model": str(model_path), "dataset": dataset}


def _recorded_contract(model_path: Path) -> Any:
    """The input contract labels.json beside the model records (pixels 0..255 if none)."""
    from keras_resnet.training.in_memory import Contract

    path = model_path.with_name("labels.json")
    try:
        labels = json.loads(path.read_text()) if path.is_file() else {}
        return Contract.recorded(labels if isinstance(labels, dict) else {})
    except (OSError, ValueError, TypeError):
        raise UsageError(f"{str(path)!r} is not a readable labels file") from None


def _run_config(path: Path) -> dict[str, Any]:
    """The ``config`` of a run's ``run_config.json`` ({} when there is none); a file that is
    not a run config is a UsageError."""
    if not path.is_file():
        return {}
    try:
        content = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"{str(path)!r} is not a readable run config ({exc})") from None
    if not isinstance(content, dict):
        raise UsageError(f"{str(path)!r} is not a readable run config (not a JSON object)")
    info = content.get("config", {})
    expected = {"dataset": str, "data_dir": (str, type(None)), "augmentation": (dict, type(None))}
    if not isinstance(info, dict) or any(key in info and not isinstance(info[key], kinds)
                                         for key, kinds in expected.items()):
        raise UsageError(f"{str(path)!r} is not a readable run config (wrong value types)")
    return info


def _start_tensorflow_quietly() -> None:
    """Import TensorFlow and find its devices with file descriptor 2 closed: TensorFlow 2.21
    writes start-up lines through absl (cudart_stub, cpu_feature_guard, cuInit) before
    ``TF_CPP_MIN_LOG_LEVEL`` applies, which would bury a one-line ``error:``.
    ``KERAS_RESNET_VERBOSE=1`` keeps them."""
    with native_stderr_silenced(unless_loaded="tensorflow"):
        import tensorflow as tf

        tf.config.list_physical_devices()


def _main(run: Any, argv: Sequence[str] | None, command: str) -> int:
    def body() -> int:
        require_extra(command, "training", "tensorflow", "tensorflow_datasets")
        _quiet_tensorflow()
        _start_tensorflow_quietly()
        return run(argv)

    return run_command(body)


def train_main(argv: Sequence[str] | None = None) -> int:
    """Console script ``keras-resnet-train``."""
    return _main(run_train, argv, "keras-resnet-train")


def eval_main(argv: Sequence[str] | None = None) -> int:
    """Console script ``keras-resnet-eval``."""
    return _main(run_eval, argv, "keras-resnet-eval")
