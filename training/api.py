"""The trainer from Python: :func:`train`, of which ``keras-resnet-train`` is the command-line
mirror (the same checks, configuration and loop; its flags are :func:`train`'s keywords with
dashes).

    import keras_resnet.training as kt
    result = kt.train("resnet20", "digits", "runs/r20", steps=500, seed=0)
    result = kt.train(my_keras_model, (x, y), "runs/mine", validation=(x_val, y_val),
                      epochs=10, batch_size=64)
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keras_resnet.training.errors import UsageError

#: Settings of :func:`train` that have no command-line flag: they describe in-memory data.
DATA_SETTINGS = ("input_range", "mean", "std", "class_names")
#: Network-builder settings of zoo networks (``keras_resnet`` builder options, fine-tuning).
ZOO_SETTINGS = ("weights", "freeze", "plain", "shortcut", "variant", "drop_path_rate",
                "zero_init_residual", "widen_factor", "groups", "width_per_group",
                "batch_norm", "input_size", "qat", "qat_scheme", "qat_observe_fraction")
_POSITIONAL = ("help", "model", "dataset", "model_dir")
#: The ``model`` a run of a network built in code records (its Keras name is no identity:
#: Keras numbers it by creation order); ``network`` holds its fingerprint.
CODE_NETWORK = "in-code"


def setting_actions() -> dict[str, argparse.Action]:
    """Every setting of :func:`train` that is a ``keras-resnet-train`` flag, by keyword."""
    from keras_resnet.training.cli import build_train_parser

    actions: dict[str, argparse.Action] = {}
    for action in build_train_parser()._actions:  # noqa: SLF001 - the parser is ours
        if action.dest not in _POSITIONAL and action.help != argparse.SUPPRESS:
            actions.setdefault(action.dest, action)
    return actions


def _check_value(name: str, action: argparse.Action, value: Any) -> None:
    if value is None:
        return
    if action.nargs == 0:  # store_true / store_false
        ok, kind = isinstance(value, bool), "True or False"
    elif action.type is int:
        ok, kind = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif action.type is float:
        ok, kind = (isinstance(value, int | float) and not isinstance(value, bool),
                    "a number")
    else:
        ok, kind = isinstance(value, str), "a string"
    if ok and action.choices is not None and value not in action.choices:
        ok, kind = False, "one of " + ", ".join(map(str, action.choices))
    if not ok:
        raise UsageError(f"train(): {name}={value!r} must be {kind}")


def settings_namespace(model: str, dataset: str, model_dir: Any,
                       settings: dict[str, Any]) -> argparse.Namespace:
    """The settings as the command line's parsed flags; UsageError (one line) for an
    unknown setting or a value of the wrong kind."""
    actions = setting_actions()
    for name, value in settings.items():
        if name in actions:
            _check_value(name, actions[name], value)
        elif name not in DATA_SETTINGS:
            hint = " (give the data as the second argument)" if name == "dataset" else ""
            raise UsageError(f"train(): unknown setting {name!r}{hint}; settings are "
                             f"{', '.join(sorted([*actions, *DATA_SETTINGS]))}")
    if not isinstance(model_dir, str | Path):
        raise UsageError(f"train(): model_dir must be a folder path, got {model_dir!r}")
    if not str(model_dir).strip():
        raise UsageError("--model-dir is an empty string; name the run's directory")
    values = {dest: None for dest in actions}
    values.update({k: v for k, v in settings.items() if k in actions})
    if values.get("epochs") is not None:
        values["epochs"] = float(values["epochs"])
    return argparse.Namespace(**values, model=model, dataset=dataset,
                              model_dir=str(model_dir))


@dataclass
class _Plan:
    """A checked run, before any heavy work."""

    args: argparse.Namespace
    family: str
    network: Any = None
    source: Any = None
    contract: Any = None


def _network_plan(model: Any, settings: dict[str, Any]) -> tuple[str, str, Any]:
    """``(name, recipe family, CodeNetwork or None)`` of the ``model`` argument."""
    import keras
    from keras_resnet.training.cli import model_family
    from keras_resnet.training.network import CodeNetwork

    if isinstance(model, str):
        return model, model_family(model), None
    if not isinstance(model, keras.Model):
        raise UsageError(f"train(): model must be a zoo name (keras_resnet.list_models()) or "
                         f"a keras.Model, got {type(model).__name__}")
    network = CodeNetwork.check(model)
    for name in ZOO_SETTINGS:
        if settings.get(name) is not None and not (
                name == "input_size" and settings[name] == network.input_size):
            raise UsageError(f"train(): {name}= applies to zoo networks; a network built in "
                             f"code is trained as built (it takes {network.input_size} px)")
    return CODE_NETWORK, "cifar" if network.input_size <= 64 else "imagenet", network


def _plan(model: Any, data: Any, model_dir: Any, validation: Any,
          settings: dict[str, Any]) -> _Plan:
    name, family, network = _network_plan(model, settings)
    in_memory = not isinstance(data, str)
    args = settings_namespace(name, data if not in_memory else "in-memory", model_dir,
                              settings)
    if not in_memory and any(settings.get(k) is not None for k in DATA_SETTINGS):
        raise UsageError("train(): input_range=, mean=, std= and class_names= describe "
                         "in-memory data; a source name gives RGB pixels 0..255 and its "
                         "own class names")
    from keras_resnet.training.cli import check_flags
    from keras_resnet.training.qat import check_qat_flags

    check_flags(args)  # the numeric settings, before any data is read
    check_qat_flags(args)
    plan = _Plan(args, family, network)
    if in_memory or validation is not None:
        _plan_data(plan, data, validation, settings)
    elif network is not None:  # the source must have the network's classes
        from keras_resnet.training import data as data_lib

        data_lib.check_dataset_name(data)
    return plan


def _plan_data(plan: _Plan, data: Any, validation: Any, settings: dict[str, Any]) -> None:
    """In-memory data and ``validation=``: read, checked and recorded (``dataset`` names
    them by a digest, so a model dir of other data is refused)."""
    from keras_resnet.training import in_memory

    args, parts = plan.args, {}
    for role, value in (("data", data), ("validation", validation)):
        if value is not None and not isinstance(value, str):
            parts[role] = in_memory.as_arrays(value, role)
    contract = None
    if "data" in parts:
        contract = in_memory.resolve_contract(parts["data"][0], settings.get("input_range"),
                                              settings.get("mean"), settings.get("std"))
    if "validation" in parts:  # in the training data's contract (a source's: 0..255)
        same = contract or in_memory.Contract()
        if same.mean is None:
            in_memory.resolve_contract(parts["validation"][0], same.range, None, None)
    names = [f"in-memory:{in_memory.digest(*parts['data'])}" if "data" in parts else data]
    if validation is not None:
        names.append(f"validation:{in_memory.digest(*parts['validation'])}"
                     if "validation" in parts else f"validation:{validation}")
    args.dataset = "+".join(names)
    plan.contract, plan.source = contract, (parts, data, validation)
    if contract is not None:
        args.input_range, args.mean, args.std = (contract.run_json()[k]
                                                 for k in ("input_range", "mean", "std"))
        if args.input_size is None and plan.network is None:
            args.input_size = int(parts["data"][0].shape[1])


def _labels(plan: _Plan, arrays: list[Any], class_names: Any) -> list[str]:
    """Class names of in-memory data: ``class_names``, else ``0``, ``1``, ...; the count is
    the network's classes (built in code) or the largest label + 1."""
    largest = max(int(y.max()) for _, y in arrays) + 1
    classes = plan.network.classes if plan.network is not None else largest
    if class_names is not None:
        if (not isinstance(class_names, list | tuple)
                or not all(isinstance(c, str) for c in class_names)):
            raise UsageError("train(): class_names must be a list of strings")
        if plan.network is None:
            classes = len(class_names)
        elif len(class_names) != classes:
            raise UsageError(f"train(): {len(class_names)} class_names for a network with "
                             f"{classes} classes")
    if largest > classes:
        raise UsageError(f"train(): a label is {largest - 1}, but there are {classes} "
                         "classes (labels are 0..classes-1)")
    if classes < 2:
        raise UsageError("train(): the labels name one class; at least 2 are needed")
    return list(class_names) if class_names is not None else [str(i) for i in range(classes)]


def _open_sources(plan: _Plan, cfg: Any, class_names: Any) -> Any:
    """The run's source (None: the loop opens ``cfg.data.dataset`` itself, as before)."""
    from keras_resnet.training import data as data_lib
    from keras_resnet.training import in_memory

    def named(spec: str) -> Any:
        classes = plan.network.classes if plan.network is not None else 1000
        return data_lib.open_source(spec, input_size=cfg.model.input_size,
                                    data_dir=cfg.data.data_dir, download=cfg.data.download,
                                    synthetic_classes=classes)

    if plan.source is None:
        return named(cfg.data.dataset) if plan.network is not None else None
    parts, data, validation = plan.source
    arrays = [parts[r] for r in ("data", "validation") if r in parts]
    train_src = named(data) if isinstance(data, str) else None
    if train_src is None:
        labels = _labels(plan, arrays, class_names)
        if not isinstance(validation, str):  # in-memory data: the test split is held out
            splits = (in_memory.hold_out(*parts["data"]) if validation is None else
                      {"train": parts["data"], "test": parts["validation"]})
            return in_memory.array_source(cfg.data.dataset, splits, labels, plan.contract)
        train_src = in_memory.array_source(cfg.data.dataset, {"train": parts["data"]}, labels,
                                           plan.contract)
    if isinstance(validation, str):
        test_src = named(validation)
    else:
        test_src = in_memory.array_source("validation", {"test": parts["validation"]},
                                          train_src.labels, plan.contract or
                                          in_memory.Contract())
    return in_memory.combined(train_src, test_src)


def _check_source_classes(plan: _Plan, source: Any) -> None:
    if plan.network is not None and source is not None and (
            source.num_classes != plan.network.classes):
        raise UsageError(f"train(): the network has {plan.network.classes} outputs, "
                         f"{source.name} has {source.num_classes} classes")


def _configure(plan: _Plan) -> tuple[Any, Any]:
    """The run's configuration and fine-tuning weights (checked, not loaded)."""
    from keras_resnet.training import cli
    from keras_resnet.training.config import with_overrides

    args = plan.args
    if args.threads is not None and args.threads < 0:
        raise UsageError("--threads must not be negative")
    if plan.network is None:
        cfg = cli.config_from_args(args, plan.family)
        cli.check_input_size(cfg.model.model, cfg.model.input_size)
        if plan.source is None:
            from keras_resnet.training import data as data_lib

            data_lib.check_dataset_name(cfg.data.dataset)
        return cli.resolve_weights(args, cfg)
    args.input_size = plan.network.input_size
    cfg = cli.config_from_args(args, plan.family, architecture={})
    return with_overrides(cfg, model={"network": plan.network.identity(),
                                      "preprocessing": "none", "batch_norm": "keras"}), None


def train(model: Any, data: Any, model_dir: str | Path, *, validation: Any = None,
          **settings: Any) -> Any:
    """Train ``model`` on ``data``, writing checkpoints and results to ``model_dir``; a
    model dir holding checkpoints of the same run is resumed exactly where it stopped.

    ``model``: a zoo name (``keras_resnet.list_models()``) or a ``keras.Model`` built in
    code (functional or Sequential, one ``(None, S, S, 3)`` input, one ``(None, classes)``
    output ending in a softmax or in logits: the loss follows). ``data`` and
    ``validation``: a source name (``digits``, ``synthetic``, ``folder:PATH``,
    ``cifar10``, ``tfds:NAME``...), an ``(x, y)`` pair of numpy arrays or a
    ``tf.data.Dataset`` of ``(image, label)``; without ``validation`` a source name is
    evaluated on its test split and in-memory data on every 10th example, held out.
    ``settings``: ``keras-resnet-train``'s flags with underscores (``steps``, ``epochs``,
    ``batch_size``, ``learning_rate``, ``seed``, ``precision``, ``recipe``, ``weights``,
    ``freeze``, ``qat``, ``qat_scheme``, ``checkpoint_every``...) and, for in-memory data,
    ``input_range``, ``mean``, ``std`` and ``class_names``
    (:mod:`keras_resnet.training.in_memory`).

    Returns a :class:`TrainResult` (the trained ``keras.Model``, ``metrics``, ``history``).
    Raises :class:`UsageError` (one line) on a bad argument, before any network is built.
    """
    plan = _plan(model, data, model_dir, validation, settings)
    return run_plan(plan, settings.get("class_names"))


def run_plan(plan: _Plan, class_names: Any = None) -> Any:
    """Check the model dir and the data, then train (:func:`train`'s second half)."""
    from keras_resnet.training import cli
    from keras_resnet.training.loop import RunInputs, prepare, run_training

    cfg, ref = _configure(plan)
    cli.configure_threads(plan.args.threads or 0)
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    prepared = prepare(cfg)
    dataset = cfg.data.dataset
    source = _open_sources(plan, cfg, class_names)
    _check_source_classes(plan, source)
    if source is None and dataset not in ("digits", "synthetic"):
        # tensorflow-datasets availability and a folder's classes and image files are
        # checked (cheaply) before building anything.
        from keras_resnet.training import data as data_lib

        data_lib.open_source(dataset, input_size=cfg.model.input_size,
                             data_dir=cfg.data.data_dir, download=cfg.data.download)
    pretrained = None
    if ref is not None and not prepared.resume:  # the weights are loaded at a fresh start only
        from keras_resnet.training.finetune import load_source

        pretrained = load_source(ref, model=cfg.model.model, architecture=cfg.model.architecture,
                                 input_size=cfg.model.input_size)
    inputs = RunInputs(pretrained, source, plan.contract, plan.network)
    try:
        result = run_training(cfg, prepared, inputs=inputs)
    except tf.errors.InvalidArgumentError:
        if "folder:" not in dataset:
            raise
        raise UsageError(f"an image of {dataset} cannot be decoded (damaged inside); the "
                         "last checkpoint is kept: fix or remove the image and run the same "
                         "command to resume") from None
    result.chief = prepared.plan.is_chief
    return result


def evaluate(model: str | Path, data: str | None = None, *, batch_size: int = 100,
             eval_examples: int | None = None, data_dir: str | None = None) -> dict[str, Any]:
    """Top-1/top-5 of a trained ``model.keras`` (a file, or a model dir holding one) on the
    test split of the source ``data`` (default: the one the run trained on); the Python
    mirror of ``keras-resnet-eval``: ``{"top1", "top5", "examples"}``."""
    from keras_resnet.training import cli

    path = Path(model)
    argv = ["--model-dir" if path.is_dir() else "--model-file", str(path),
            "--batch-size", str(batch_size)]
    for flag, value in (("--dataset", data), ("--eval-examples", eval_examples),
                        ("--data-dir", data_dir)):
        if value is not None:
            argv += [flag, str(value)]
    return cli.evaluate_from_args(argv)
