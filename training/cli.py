"""Command line: ``keras-resnet-train`` (``python -m keras_resnet.training``) and ``keras-resnet-eval``.

Bad input (unknown model/dataset/recipe, unavailable data, indivisible batch size, invalid
``TF_CONFIG``, a model dir of a different run) prints one ``error: ...`` line on stderr and
exits with code 2, before any model is built or dataset loaded.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from keras_resnet.training.architecture import add_architecture_flags
from keras_resnet.training.compilation import JIT_CHOICES
from keras_resnet.training.errors import UsageError
from keras_resnet.training.precision import PRECISIONS
from keras_resnet.training.strategy import STRATEGIES

from keras_resnet.console import Parser, native_stderr_silenced, require_extra, run_command


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
                description="Train a keras_resnet model with one tf.distribute loop "
                            "(see docs/training.md).")
    p.add_argument("--model", required=True, help="model name (keras_resnet.list_models())")
    p.add_argument("--dataset", default="digits",
                   help="digits (default, offline) | synthetic | cifar10 | cifar100 | "
                        "imagenet2012 | imagenette | tfds:NAME | folder:PATH")
    p.add_argument("--data-dir", help="tensorflow-datasets data dir")
    p.add_argument("--download", action="store_true",
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
    p.add_argument("--strategy", default="auto", choices=STRATEGIES,
                   help="auto picks from the devices and TF_CONFIG")
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="auto: mixed_float16 on GPUs, mixed_bfloat16 on TPUs and bf16 CPUs")
    p.add_argument("--jit-compile", default="auto", choices=JIT_CHOICES,
                   help="compile the forward/backward pass with XLA: auto decides from the "
                        "CPU, precision and strategy (docs/training.md)")
    p.add_argument("--jit", dest="jit_compile", action="store_const", const="on",
                   help=argparse.SUPPRESS)  # the earlier spelling of --jit-compile on
    p.add_argument("--batch-norm", default="fused", choices=("fused", "keras"),
                   help="training-time batch norm kernel: TensorFlow's fused op (default, same "
                        "maths, faster) or Keras' layer as is; model.keras always uses Keras' layer")
    p.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints")
    p.add_argument("--keep-checkpoints", type=int, default=3, help="checkpoints kept")
    p.add_argument("--eval-every", type=int, default=0,
                   help="steps between evaluations (0: only at the end)")
    p.add_argument("--eval-examples", type=int, help="evaluate on the first N test images only")
    p.add_argument("--eval-only", action="store_true",
                   help="evaluate the latest checkpoint in --model-dir and exit")
    p.add_argument("--seed", type=int,
                   help="seed for weights, data order and augmentation; also makes ops "
                        "deterministic")
    add_architecture_flags(p)
    p.add_argument("--log-every", type=int, default=10, help="steps between log lines")
    p.add_argument("--cache", action="store_true", help="cache the decoded dataset in memory")
    p.add_argument("--shuffle-buffer", type=int, default=10000, help="shuffle buffer size")
    p.add_argument("--mean-images", type=int, default=10000,
                   help="training images used for the normalisation statistics")
    p.add_argument("--threads", type=int, default=0,
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


def _configure_threads(threads: int) -> None:
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


def _model_family(name: str) -> str:
    import keras_resnet

    if name not in keras_resnet.list_models():
        raise UsageError(f"unknown model {name!r}; see keras_resnet.list_models() "
                         f"(e.g. {', '.join(keras_resnet.list_models()[:4])}, ...)")
    return keras_resnet.model_info(name)["family"]


def _check_input_size(model: str, size: int) -> None:
    import keras_resnet

    least = keras_resnet.model_info(model)["min_input_size"]
    if size < least:
        raise UsageError(f"--input-size {size} is too small for {model}: at least {least} "
                         "(its total stride)")


def train_from_args(argv: Sequence[str] | None = None) -> Any:
    """Parse, validate and train; returns a :class:`keras_resnet.training.loop.TrainResult`.

    Raises :class:`UsageError` on bad input, before any model is built or data loaded.
    """
    from keras_resnet.training import data
    from keras_resnet.training.config import resolve_config

    args = build_train_parser().parse_args(argv)
    if args.threads < 0:
        raise UsageError("--threads must not be negative")
    family = _model_family(args.model)
    cfg = resolve_config(args, family)
    _check_input_size(cfg.model, cfg.input_size)
    data.check_dataset_name(cfg.dataset)
    _configure_threads(args.threads)
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    from keras_resnet.training.loop import prepare, train

    prepared = prepare(cfg)
    if cfg.dataset not in ("digits", "synthetic"):
        # tensorflow-datasets availability and a folder's classes and image files are
        # checked (cheaply) before building anything.
        data.open_source(cfg.dataset, input_size=cfg.input_size, data_dir=cfg.data_dir,
                         download=cfg.download)
    try:
        result = train(cfg, prepared)
    except tf.errors.InvalidArgumentError:
        if not cfg.dataset.startswith("folder:"):
            raise
        raise UsageError(f"an image of {cfg.dataset} cannot be decoded (damaged inside); the "
                         "last checkpoint is kept: fix or remove the image and run the same "
                         "command to resume") from None
    if cfg.eval_only and prepared.plan.is_chief:
        print(json.dumps({k: result.metrics[k] for k in ("step", "eval_top1", "eval_top5",
                                                         "eval_loss", "eval_examples")}))
    return result


def run_train(argv: Sequence[str] | None = None) -> int:
    """``keras-resnet-train``: train and return the exit code (143 after SIGTERM)."""
    from keras_resnet.training.loop import SIGTERM_EXIT_CODE

    result = train_from_args(argv)
    return SIGTERM_EXIT_CODE if result.metrics.get("stopped") else 0


def run_eval(argv: Sequence[str] | None = None) -> int:
    """``keras-resnet-eval``: load ``model.keras`` and report top-1/top-5 on the test split."""
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
    if not dataset:
        raise UsageError("--dataset is needed (no run_config.json next to the model)")
    from keras_resnet.training import data
    from keras_resnet.training.evaluate import evaluate_model

    data.check_dataset_name(dataset)
    results = evaluate_model(model_path, dataset, data_dir=args.data_dir or info.get("data_dir"),
                             input_size=args.input_size, batch_size=args.batch_size,
                             limit=args.eval_examples, augmentation=info.get("augmentation"))
    if args.json:
        print(json.dumps(results))
    else:
        print(f"{model_path}: top-1 {results['top1']:.4f} top-5 {results['top5']:.4f} "
              f"on {results['examples']} {dataset} test images")
    return 0


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
