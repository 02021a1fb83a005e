"""``export_model``: build every requested artifact in a temporary directory next to the
output, verify each in its own runtime, write the manifest, then move it into place."""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from keras_resnet.export.errors import UsageError, VerificationFailed
from keras_resnet.export.formats import (
    FORMATS,
    PRECISIONS,
    QUANTIZE_MODES,
    ExportJob,
    format_row,
    quantizing_formats,
)
from keras_resnet.export.int8_levers import check_int8_levers
from keras_resnet.export.keep_float import check_keep_float_names
from keras_resnet.export.manifest import (
    MANIFEST_NAME,
    SCHEMA_VERSION,
    sha256_path,
    size_bytes,
    tool_versions,
)
from keras_resnet.export.placement import Placement, check_given, check_output
from keras_resnet.export.qat_int8 import model_qat_scheme, settle_qat_options
from keras_resnet.export.targets import TARGETS, apply_target, check_target
from keras_resnet.export.verify import DEFAULT_MIN_AGREEMENT

DEFAULT_OPSET = 17
#: Calibration images drawn when ``samples`` is not given.
DEFAULT_SAMPLES = 100
PARITY_BATCH = 8
#: Largest ``--classes`` and ``--input-size`` the exporter builds a zoo model with.
MAX_CLASSES = 100_000
MAX_INPUT_SIZE = 2048


@dataclass
class ExportOptions:
    """Everything ``keras-resnet-export`` accepts (see docs/export.md)."""

    target: str = "cpu"
    formats: list[str] | None = None  # None: the target's (see export/targets.py)
    quantize: list[str] | None = None
    #: A source name, a .npy/.npz file, images, (images, labels), a Dataset or batches.
    calibration: Any = None
    calibration_method: str = "minmax"
    data: Any = None
    #: Evaluation images (None: the whole test split) and calibration images (None: 100).
    samples: int | None = None
    opset: int = DEFAULT_OPSET
    nchw: bool = False
    int8_scheme: str | None = None
    int8_io: str = "int8"
    ov_precision: str = "auto"
    batch: int | None = None
    static: bool = False
    weights: str | None = None
    classes: int | None = None
    input_size: int | None = None
    labels: Any = None  # a file, or a list of class names
    builder: dict[str, Any] = field(default_factory=dict)
    min_agreement: float = DEFAULT_MIN_AGREEMENT
    force: bool = False
    threads: int = 2
    seed: int = 0
    #: The input contract when the model does not record it (see export/contract.py).
    input_range: Any = None
    mean: Any = None
    std: Any = None
    channel_order: str = "RGB"
    #: Record each quantized layer's error in every int8 file (export/layer_report.py).
    layer_report: bool = False
    #: Keras layers kept float in the int8 files, or ["auto"] (export/keep_float.py).
    keep_float: list[str] | None = None


def validate_options(model: Any, output: Path, options: ExportOptions,
                     qat: str | None = None) -> None:
    """Reject bad input before any heavy work; raises UsageError. In-memory calibration and
    evaluation data are checked and replaced by arrays here. ``qat``: the scheme a
    quantization-aware model simulates (its int8 files need no calibration)."""
    from keras_resnet.export.contract import parse_channels_stat, parse_range
    from keras_resnet.export.samples import as_samples

    _check_types(options)
    _check_formats(options)
    check_target(options)
    check_int8_levers(options)
    _check_unread_options(options)
    for mode in options.quantize:
        if PRECISIONS[QUANTIZE_MODES[mode]].calibrated and options.calibration is None \
                and qat is None:
            raise UsageError(f"--quantize {mode} needs a calibration set: --calibration "
                             "digits | tfds:NAME | folder:PATH | synthetic | FILE.npy")
    _check_numbers(model, options)
    parse_range(options.input_range)
    parse_channels_stat(options.mean, "mean")
    parse_channels_stat(options.std, "std")
    options.calibration = as_samples(options.calibration, "calibration",
                                     options.samples or DEFAULT_SAMPLES)
    options.data = as_samples(options.data, "data", options.samples or MAX_EVAL_SAMPLES)
    _check_model_argument(model)
    if isinstance(options.labels, str) and not Path(options.labels).is_file():
        raise UsageError(f"labels file {options.labels} not found")
    check_output(output, options.force, _input_paths(model, options))


#: The type each option must have (bool is refused where a number is asked).
_TYPES: dict[str, tuple[type, ...]] = {
    "target": (str,), "calibration_method": (str,), "opset": (int,), "nchw": (bool,),
    "int8_io": (str,), "static": (bool,), "force": (bool,), "threads": (int,), "seed": (int,),
    "min_agreement": (int, float), "builder": (dict,), "channel_order": (str,)}
_OPTIONAL: dict[str, tuple[type, ...]] = {
    "samples": (int,), "int8_scheme": (str,), "batch": (int,), "weights": (str,),
    "classes": (int,), "input_size": (int,)}


def _check_types(options: ExportOptions) -> None:
    """Each option of the type it must have, and sequences as lists of words."""
    for name, types in (*_TYPES.items(), *_OPTIONAL.items()):
        value = getattr(options, name)
        if value is None and name in _OPTIONAL:
            continue
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            allowed = " or ".join(t.__name__ for t in types)
            raise UsageError(f"{name} must be {allowed}"
                             f"{' or None' if name in _OPTIONAL else ''} (got {value!r})")
    if options.seed < 0:
        raise UsageError(f"seed (--seed) must be at least 0 (got {options.seed})")
    if options.channel_order not in ("RGB", "BGR"):
        raise UsageError(f"channel_order must be RGB or BGR (got {options.channel_order!r})")
    options.formats = _words(options.formats, "formats")
    options.quantize = _words(options.quantize, "quantize")
    if options.labels is not None and not isinstance(options.labels, str) and not (
            isinstance(options.labels, list | tuple)
            and all(isinstance(x, str) for x in options.labels)):
        raise UsageError("labels must be a file name or a list of class names "
                         f"(got {type(options.labels).__name__})")


def _words(value: Any, name: str) -> list[str] | None:
    """``"float16,int8"``, ``"int8"`` or ``["float16", "int8"]`` as a list of words."""
    if value is None:
        return None
    if isinstance(value, str):
        return [w.strip() for w in value.split(",") if w.strip()]
    if isinstance(value, list | tuple) and all(isinstance(w, str) for w in value):
        return [w.strip() for w in value if w.strip()]
    raise UsageError(f"{name} must be a comma list or a list of words (got {value!r})")


def _check_formats(options: ExportOptions) -> None:
    """``--formats`` and ``--quantize`` against the table of formats, then each chosen
    format's own check of its options."""
    if not options.formats:
        raise UsageError(f"--formats is empty; choose from {', '.join(FORMATS)}")
    rows = [format_row(name) for name in options.formats]
    for mode in options.quantize:
        if mode not in QUANTIZE_MODES:
            raise UsageError(f"unknown quantize mode {mode!r}; choose from "
                             f"{', '.join(QUANTIZE_MODES)}")
    if options.quantize and not any(row.name in quantizing_formats() for row in rows):
        raise UsageError(f"--quantize needs the {' or '.join(quantizing_formats())} format")
    for row in dict.fromkeys(rows):
        row.check_options(options)


#: Command-line flags of the options whose flag is not ``--`` + the field name.
_FLAGS = {"int8_scheme": "--onnx-int8-scheme"}


def _check_unread_options(options: ExportOptions) -> None:
    """An option that only some formats read, given (not its target's default) while none
    of the chosen formats reads it, is refused rather than ignored."""
    defaults = apply_target(ExportOptions(target=options.target))
    read = {name for fmt in options.formats for name in FORMATS[fmt].options}
    for name in dict.fromkeys(n for row in FORMATS.values() for n in row.options):
        if name not in read and getattr(options, name) != getattr(defaults, name):
            owners = " or ".join(fmt for fmt, row in FORMATS.items() if name in row.options)
            flag = _FLAGS.get(name, "--" + name.replace("_", "-"))
            raise UsageError(f"{flag} applies to the {owners} format only")


def _check_numbers(model: str, options: ExportOptions) -> None:
    """``--samples``, ``--threads``, ``--min-agreement``, ``--classes``, ``--input-size``."""
    from keras_resnet.export.source import looks_like_keras_file
    from keras_resnet.export.verify import check_verify_arguments

    check_verify_arguments(options.samples, options.threads)
    if not 0.0 <= options.min_agreement <= 1.0:
        raise UsageError(f"--min-agreement must be in 0..1 (got {options.min_agreement})")
    if options.classes is not None and not 1 <= options.classes <= MAX_CLASSES:
        raise UsageError(f"--classes must be in 1..{MAX_CLASSES} (got {options.classes})")
    if options.input_size is not None:
        least = 1
        if isinstance(model, str) and not looks_like_keras_file(model) \
                and model.lower() in _zoo_names():
            import keras_resnet

            least = keras_resnet.model_info(model)["min_input_size"]
        if options.input_size < least:
            raise UsageError(f"--input-size {options.input_size} is too small for {model}: at "
                             f"least {least} (its total stride)")
        if options.input_size > MAX_INPUT_SIZE:
            raise UsageError(f"--input-size must be at most {MAX_INPUT_SIZE} "
                             f"(got {options.input_size})")


def _check_model_argument(model: Any) -> None:
    """MODEL is a ``keras.Model``, names a zoo entry or an existing ``.keras`` file."""
    from keras_resnet.export.source import looks_like_keras_file

    if _is_keras_model(model):
        return
    if not isinstance(model, str | Path):
        raise UsageError(f"model must be a keras.Model, a zoo name or a .keras file (got "
                         f"{type(model).__name__})")
    if not looks_like_keras_file(model):
        if model.lower() not in _zoo_names():
            raise UsageError(f"unknown model {model!r}; available: {', '.join(_zoo_names())}, "
                             "or a .keras file")
        return
    path = Path(model)
    if not path.is_file():
        raise UsageError(f"model file {path} not found (and not a zoo model name)")
    if path.suffix != ".keras":
        raise UsageError(f"model file {path} is not a .keras file")


def _is_keras_model(model: Any) -> bool:
    import keras

    return isinstance(model, keras.Model)


def _zoo_names() -> list[str]:
    import keras_resnet

    return keras_resnet.list_models()


def _input_paths(model: str, options: ExportOptions) -> list[Path]:
    """The files and folders this export reads: none may be deleted by ``--force``."""
    from keras_resnet.export.source import looks_like_keras_file

    paths = [Path(model)] if looks_like_keras_file(model) else []
    if isinstance(options.labels, str):
        paths.append(Path(options.labels))
    if options.weights not in (None, "imagenet") and not options.weights.startswith("timm/"):
        paths.append(Path(options.weights))
    for spec in (options.calibration, options.data):
        if isinstance(spec, str) and spec.startswith("folder:"):
            paths.append(Path(spec[len("folder:"):]))
        elif isinstance(spec, str) and spec.endswith((".npy", ".npz")):
            paths.append(Path(spec))
    return paths


def resolve_model(model: Any, options: ExportOptions) -> Any:
    """The ModelSource for MODEL: a ``keras.Model``, a ``.keras`` file or a zoo name, with
    its input contract settled (UsageError naming how to state it where it is unknown)."""
    from keras_resnet.export.source import (
        from_keras_file,
        from_model,
        from_zoo,
        looks_like_keras_file,
        read_labels,
        settle_contract,
    )

    zoo_mode = None
    if _is_keras_model(model) or looks_like_keras_file(model):
        zoo_only = {"--weights": options.weights, "--classes": options.classes,
                    "--input-size": options.input_size, **{f"--{k.replace('_', '-')}": v
                                                           for k, v in options.builder.items()}}
        given = [name for name, value in zoo_only.items() if value is not None]
        if given:
            raise UsageError(f"{', '.join(given)} only apply to zoo models, not to a "
                             f"{'keras.Model' if _is_keras_model(model) else '.keras file'}")
        source = from_model(model) if _is_keras_model(model) else from_keras_file(Path(model))
    else:
        source = from_zoo(model, weights=options.weights, classes=options.classes,
                          input_size=options.input_size, builder=options.builder,
                          seed=options.seed)
        zoo_mode = source.preprocessing
    if isinstance(options.labels, str):
        source.labels = read_labels(Path(options.labels))
    elif options.labels is not None:
        source.labels = [str(x) for x in options.labels]
    outputs = source.model.outputs[0].shape
    if source.labels is not None and len(outputs) == 2 and outputs[-1] != len(source.labels):
        raise UsageError(f"{len(source.labels)} labels for a model with {outputs[-1]} outputs")
    settle_contract(source, options, zoo_mode)
    return source


def _options(options: ExportOptions | None, overrides: dict[str, Any]) -> ExportOptions:
    """The options with keyword overrides applied; a quantize word as a keyword
    (``int8=True``) adds it to ``quantize``."""
    words = {k: overrides.pop(k) for k in list(overrides) if k in QUANTIZE_MODES}
    unknown = set(overrides) - set(ExportOptions.__dataclass_fields__)
    if unknown:
        raise UsageError(f"unknown export option(s): {', '.join(sorted(unknown))}; see "
                         "keras_resnet.export.ExportOptions")
    options = replace(options or ExportOptions(), **overrides)
    for word, value in words.items():
        if not isinstance(value, bool):
            raise UsageError(f"{word}= must be True or False (got {value!r})")
        if value:
            options.quantize = [*(_words(options.quantize, "quantize") or []), word]
    return options


def export_model(model: Any, output: str | Path, options: ExportOptions | None = None,
                 log: Any = None, **overrides: Any) -> dict[str, Any]:
    """Export MODEL (a ``keras.Model``, a zoo name or a ``.keras`` path) to ``output``;
    returns the manifest. Keyword overrides are ``ExportOptions`` fields (``quantize="int8"``,
    ``calibration=x_train``, ``input_range=(0, 1)``, ...) or quantize words (``int8=True``).

    Raises UsageError for bad input (nothing written) and VerificationFailed when an artifact
    fails its parity check or the model its sanity check (the directory is kept, its
    manifest marked ``failed``).
    """
    options = _options(options, dict(overrides))
    if not isinstance(output, str | os.PathLike):
        raise UsageError(f"output must be a directory path (got {output!r})")
    _check_types(options)
    given, qat = options, model_qat_scheme(model)
    options = apply_target(options)
    if qat is not None:
        options = settle_qat_options(options, qat, given)
    check_given(model, output, options)
    output = Path(output)
    log = log or (lambda message: None)
    started = time.perf_counter()
    validate_options(model, output, options, qat)
    with Placement(output, options.force, _input_paths(model, options)) as place:
        staging = place.staging
        source = resolve_model(model, options)
        check_keep_float_names(options.keep_float, source.model)
        calib, x_eval, y_eval, eval_spec = _load_data(source, options)
        manifest = _build(source, staging, options, calib, x_eval, y_eval, eval_spec, log)
        manifest["export_seconds"] = round(time.perf_counter() - started, 1)
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        place.commit()
    if manifest["status"] != "passed":
        failed = [f"{a['format']}/{a['precision']}" for a in manifest["artifacts"]
                  if not a["parity"]["passed"]]
        reasons = [f"parity check failed for {', '.join(failed)}"] if failed else []
        if not manifest["sanity"]["passed"]:
            reasons.insert(0, "the model's sanity check failed: "
                           + "; ".join(manifest["sanity"]["problems"]))
        raise VerificationFailed(f"{'; '.join(reasons)}; see {output / 'manifest.json'}")
    return manifest


def _load_data(source: Any, options: ExportOptions
               ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None, dict[str, Any]]:
    """Calibration inputs (int8: a sample of the source's training split, or the given
    images) and evaluation inputs (the source's whole test split unless ``samples`` limits
    it, or the given images) with their labels where known, all in the model's input
    contract. The split rule is the trainer's (:mod:`keras_resnet.training.data`)."""
    calib = None
    if options.calibration is not None and "int8" in options.quantize:
        calib, _, _ = _model_inputs(source, options.calibration, "train",
                                    options.samples or DEFAULT_SAMPLES, options.seed,
                                    "calibration")
    role = "data" if options.data is not None else "calibration"
    given = options.data if options.data is not None else options.calibration
    limit = options.samples or _whole_split_limit(source.input_shape)
    x_eval, y_eval, described = _model_inputs(source, "synthetic" if given is None else given,
                                              "test", limit, options.seed, role)
    if given is not None and given is options.calibration and not isinstance(given, str):
        y_eval, described = None, f"the calibration images ({described}; none held out)"
    spec = {"source": described, "split": "test", "samples": int(len(x_eval)),
            "whole_split": isinstance(given, str | None) and options.samples is None
            and len(x_eval) < limit, "in_memory": not isinstance(given, str | None),
            "seed": options.seed, "labelled": y_eval is not None}
    return calib, x_eval, y_eval, spec


def _model_inputs(source: Any, given: Any, split: str, count: int, seed: int, role: str
                  ) -> tuple[np.ndarray, np.ndarray | None, str]:
    """``count`` images of a named source converted to the model's contract, or in-memory
    images (model input already: shape and range checked); their labels and a description."""
    from keras_resnet.export.contract import check_array_range
    from keras_resnet.export.samples import load_samples

    if isinstance(given, str):
        pixels, labels = load_samples(given, split, count, source.input_shape[:2], seed=seed,
                                      role=role)
        return source.preprocess(pixels), labels, given
    images, labels = given.images[:count], None if given.labels is None else given.labels[:count]
    if tuple(images.shape[1:]) != tuple(source.input_shape):
        raise UsageError(f"{role} images have shape {list(images.shape[1:])} per image; the "
                         f"model takes {list(source.input_shape)} (H, W, C)")
    check_array_range(images, source.contract, role)
    return images, labels, given.description


#: Most evaluation images drawn, and the most bytes they may take in memory.
MAX_EVAL_SAMPLES = 10000
MAX_EVAL_BYTES = 1 << 30


def _whole_split_limit(shape: tuple[int, int, int]) -> int:
    """How many test images "the whole split" may mean for this input size."""
    return max(1, min(MAX_EVAL_SAMPLES, MAX_EVAL_BYTES // (4 * int(np.prod(shape)))))


def _accuracy(outputs: np.ndarray, labels: np.ndarray | None) -> float | None:
    """Top-1 accuracy against ground truth, for a classifier whose classes are the labelled
    data's (as many outputs as label values seen); None otherwise."""
    if labels is None or outputs.ndim != 2 or outputs.shape[-1] != int(labels.max()) + 1:
        return None
    return float(np.mean(np.argmax(outputs, axis=1) == labels))


class _Recorder:
    """Runs each written file in its runtime against the Keras outputs and keeps its manifest
    entry: parity, test top-1, latency, digest, and the target's file checks."""

    def __init__(self, staging: Path, options: ExportOptions, ref: np.ndarray,
                 logits: np.ndarray | None, x_eval: np.ndarray, y_eval: np.ndarray | None,
                 log: Any, qat: str | None = None) -> None:
        self.staging, self.options, self.ref, self.logits, self.log = (
            staging, options, ref, logits, log)
        #: A quantization-aware model's files are all judged by top-1 agreement with it.
        self.qat = qat
        self.x_eval, self.y_eval = x_eval, y_eval
        self.required = dict(TARGETS[options.target].checks)
        self.artifacts: list[dict[str, Any]] = []

    def __call__(self, fmt: str, precision: str, rel: str, info: dict[str, Any],
                 seconds: float, checks: dict[str, dict[str, Any]] | None = None) -> None:
        from keras_resnet.export.bench import median_latency_ms
        from keras_resnet.export.verify import (
            compare,
            file_logits,
            judged_precision,
            make_runner,
            parity_text,
            run_batched,
        )

        artifact = {"format": fmt, "precision": precision, "path": rel, **info}
        if self.options.batch is not None:
            artifact["batch"] = self.options.batch
        runner = make_runner(self.staging, artifact, self.options.threads)
        full = PRECISIONS[precision].by_agreement or self.y_eval is not None or bool(self.qat)
        count = len(self.ref) if full else PARITY_BATCH
        out = run_batched(runner, self.x_eval[:count])
        logits = None if self.logits is None else self.logits[:count]
        parity_count = min(PARITY_BATCH, count)
        parity = compare(self.ref[:count], out, judged_precision(precision, runner),
                         self.options.min_agreement, parity_count, logits=logits, file_logits=file_logits(
                             self.staging, artifact, self.options.threads, logits,
                             self.x_eval[:parity_count]), by_agreement=bool(self.qat))
        accuracy = _accuracy(out, self.y_eval[:count] if self.y_eval is not None else None)
        if accuracy is not None:
            parity["test_top1"] = accuracy
            parity["test_samples"] = int(count)
        self._apply_checks(f"{fmt}/{precision}", parity, checks or {})
        latency = median_latency_ms(runner, self.x_eval[:1], runs=7, warmup=2)
        artifact.update({"sha256": sha256_path(self.staging / rel),
                         "bytes": size_bytes(self.staging / rel), "parity": parity,
                         "latency_ms": round(latency, 2), "convert_seconds": round(seconds, 1),
                         **({"checks": checks} if checks else {})})
        self.artifacts.append(artifact)
        top1 = (f", test top-1 {accuracy * 100:.2f}% of {count}" if accuracy is not None
                else "")
        self.log(f"{fmt}/{precision}: {rel} parity {'ok' if parity['passed'] else 'FAILED'} "
                 f"({parity_text(parity)}{top1}{'; ' + parity['error'] if 'error' in parity else ''}"
                 f") latency {latency:.2f} ms")

    def _apply_checks(self, key: str, parity: dict[str, Any],
                      checks: dict[str, dict[str, Any]]) -> None:
        """A check the target requires of this file must pass, or the file fails."""
        name = self.required.get(key)
        if name and not checks.get(name, {}).get("passed"):
            problems = checks.get(name, {}).get("problems", ["not run"])
            parity["passed"] = False
            parity["error"] = f"{name} check failed: {'; '.join(problems[:3])}"


def _build(source: Any, staging: Path, options: ExportOptions, calib: np.ndarray | None,
           x_eval: np.ndarray, y_eval: np.ndarray | None, eval_spec: dict[str, Any],
           log: Any) -> dict[str, Any]:
    """Write every artifact into ``staging`` and return the manifest (not yet written)."""
    from keras_resnet.export.qat_int8 import job_qat_scheme, qat_manifest

    from keras_resnet.cpu import cpu_info

    reference_files = _write_reference(source, staging, x_eval[:PARITY_BATCH])
    job = ExportJob(source, staging, options, calib)
    qat = job_qat_scheme(job)
    ref, logits = _reference_outputs(source, options, x_eval, y_eval, eval_spec, log,
                                     qat is not None)
    sanity = _sanity(source, eval_spec, ref, y_eval)
    if not sanity["passed"]:
        log("keras: sanity check FAILED: " + "; ".join(sanity["problems"]))
    record = _Recorder(staging, options, ref, logits, x_eval, y_eval, log, qat)
    notes = list(source.notes) + _write_artifacts(job, record)
    passed = all(a["parity"]["passed"] for a in record.artifacts) and sanity["passed"]
    batch = options.batch
    layers = _layer_report(source, staging, options, record.artifacts, x_eval)
    return {
        "schema_version": SCHEMA_VERSION,
        "status": "passed" if passed else "failed",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": {"name": source.name, "config": source.config,
                  "untrained": source.untrained},
        "target": options.target,
        "input": {"shape": [batch, *source.input_shape], "dtype": "float32", "layout": "NHWC",
                  "range": source.contract.describe(), "contract": source.contract.to_json(),
                  "preprocessing": source.preprocessing,
                  "preprocessing_in_model": source.preprocessing_in_model},
        "output": {"shape": [batch, *[int(d) for d in source.model.outputs[0].shape[1:]]],
                   "kind": "probabilities" if _probabilities(ref) else "values",
                   "compared_on": "logits" if logits is not None else "outputs"},
        "labels": source.labels,
        "options": _options_record(options),
        "evaluation": eval_spec,
        "sanity": sanity,
        "tools": tool_versions(),
        "cpu": cpu_info(),
        "reference": reference_files,
        "artifacts": record.artifacts,
        "notes": notes,
        **({"layers": layers} if layers is not None else {}),
        **({"qat": qat_manifest(qat, options)} if qat is not None else {}),
    }


def _options_record(options: ExportOptions) -> dict[str, Any]:
    """The options as the manifest records them (in-memory data by its description)."""
    record = {}
    for name in ExportOptions.__dataclass_fields__:
        value = getattr(options, name)
        if name == "force":
            continue
        if name in ("calibration", "data") and value is not None and not isinstance(value, str):
            value = value.description
        elif isinstance(value, tuple):
            value = list(value)
        record[name] = value
    return record


def _layer_report(source: Any, staging: Path, options: ExportOptions,
                  artifacts: list[dict[str, Any]], x_eval: np.ndarray) -> dict[str, Any] | None:
    """The per-layer report of every int8 file when ``--layer-report`` asks for it."""
    if not options.layer_report:
        return None
    from keras_resnet.export.layer_report import (
        DEFAULT_REPORT_IMAGES,
        keras_layer_classes,
        layer_reports,
    )

    return layer_reports(staging, artifacts, x_eval[:DEFAULT_REPORT_IMAGES],
                         keras_layer_classes(source.model))


def _reference_outputs(source: Any, options: ExportOptions, x_eval: np.ndarray,
                       y_eval: np.ndarray | None, eval_spec: dict[str, Any],
                       log: Any, every_image: bool = False
                       ) -> tuple[np.ndarray, np.ndarray | None]:
    """The Keras model's outputs every artifact is compared with (on every image when
    ``every_image``: a quantization-aware model's files are all judged by agreement), its
    logits where it ends in a softmax (else None), and its test top-1 into ``eval_spec``
    when the data is labelled."""
    from keras_resnet.export.verify import reference_outputs

    quantized = any(PRECISIONS[QUANTIZE_MODES[m]].by_agreement for m in options.quantize)
    # Every sample when quantized models are judged by agreement or accuracy is measured.
    full = quantized or y_eval is not None or every_image
    reference_count = len(x_eval) if full else min(PARITY_BATCH, len(x_eval))
    log(f"keras: reference outputs on {reference_count} images")
    ref, logits = reference_outputs(source.model, x_eval[:reference_count])
    if not np.isfinite(ref).all():
        raise UsageError(f"the model's outputs on {eval_spec['source']} are not finite (NaN or "
                         "infinity): its weights overflow; nothing was exported")
    keras_accuracy = _accuracy(ref, y_eval)
    if keras_accuracy is not None:
        eval_spec["keras_top1"] = keras_accuracy
        eval_spec["keras_top1_samples"] = int(len(ref))
        log(f"keras: test top-1 {keras_accuracy * 100:.2f}% on {len(ref)} labelled images "
            f"({eval_spec['source']})")
    return ref, logits


def _sanity(source: Any, eval_spec: dict[str, Any], ref: np.ndarray,
            labels: np.ndarray | None) -> dict[str, Any]:
    """The float Keras model's own test top-1 against chance, its predictions against the
    classes of the labels (a model fed inputs in the wrong range answers a few classes for
    every image) and its top-1 against what its training run recorded: a model that does
    not work cannot have files that "pass"."""
    sanity: dict[str, Any] = {"passed": True, "problems": []}
    if source.untrained:
        sanity["note"] = (f"untrained: seeded random weights (seed "
                          f"{source.config.get('seed')}); agreement says nothing of quality")
        return sanity
    top1, count = eval_spec.get("keras_top1"), eval_spec.get("keras_top1_samples", 0)
    if top1 is None:
        sanity["note"] = "not checked: no labelled evaluation data"
        return sanity
    classes = int(ref.shape[-1])
    sanity["checked_on"] = count
    if top1 < 1.5 / classes:
        sanity["problems"].append(
            f"Keras model test top-1 {top1 * 100:.1f}% of {count} images is at chance level "
            f"({100 / classes:.1f}% for {classes} classes): is its input contract right? "
            f"({source.contract.describe()}, {source.contract.read_from})")
    present = np.unique(labels[:len(ref)])
    answered = np.intersect1d(np.unique(np.argmax(ref, axis=1)), present)
    if count >= 5 * len(present) and len(answered) < len(present) / 2:
        sanity["problems"].append(
            f"Keras model answers only {len(answered)} of the {len(present)} classes of the "
            f"{count} labelled images (test top-1 {top1 * 100:.1f}%): is its input contract "
            f"right? ({source.contract.describe()}, {source.contract.read_from})")
    recorded, dataset = source.recorded.get("top1"), source.recorded.get("dataset")
    if isinstance(recorded, int | float) and dataset in (None, eval_spec["source"]):
        margin = max(0.05, 3 * float(np.sqrt(max(recorded * (1 - recorded), 1e-6) / count)))
        sanity["recorded_top1"] = float(recorded)
        if top1 < recorded - margin:
            sanity["problems"].append(
                f"Keras model test top-1 {top1 * 100:.1f}% of {count} images is far below the "
                f"{recorded * 100:.1f}% its training run recorded (metrics.json)")
    sanity["passed"] = not sanity["problems"]
    return sanity


def _write_artifacts(job: ExportJob, record: _Recorder) -> list[str]:
    """Every precision of every chosen format, in the table's order, each converted by its
    row's converter and recorded; returns notes on ``--quantize`` words a format skipped."""
    notes = []
    for name, row in FORMATS.items():
        if name not in job.options.formats:
            continue
        for precision in row.written(job.options.quantize):
            started = time.perf_counter()
            written = row.convert(job, precision)
            record(name, precision, written.path, written.info,
                   time.perf_counter() - started, written.checks)
        skipped = row.skipped(job.options.quantize)
        if skipped and len(row.precisions) > 1:
            notes.append(f"--quantize {','.join(skipped)} does not apply to {row.title}; "
                         f"{row.title} gets {', '.join(row.precisions)}")
    for path in job.scratch:
        shutil.rmtree(path)
    return notes


def _probabilities(ref: np.ndarray) -> bool:
    from keras_resnet.export.verify import is_probabilities

    return is_probabilities(ref)


def _write_reference(source: Any, staging: Path, parity: np.ndarray) -> dict[str, Any]:
    """The Keras model and the parity batch, kept for verify and bench."""
    keras_path = staging / "model.keras"
    if source.keras_path is not None:
        shutil.copyfile(source.keras_path, keras_path)
    else:
        source.model.save(keras_path)
    np.save(staging / "parity_inputs.npy", parity.astype(np.float32))
    files = {name: {"path": rel, "sha256": sha256_path(staging / rel),
                    "bytes": size_bytes(staging / rel)}
             for name, rel in (("keras_model", "model.keras"),
                               ("parity_inputs", "parity_inputs.npy"))}
    files["keras_model"]["weights_sha256"] = _weights_digest(keras_path)
    return files


def _weights_digest(keras_path: Path) -> str | None:
    """SHA-256 of the weights inside a ``.keras`` file: the same for the same weights, where
    the file's own digest is not (Keras records the save date and object ids)."""
    import hashlib
    import zipfile

    try:
        with zipfile.ZipFile(keras_path) as archive:
            return hashlib.sha256(archive.read("model.weights.h5")).hexdigest()
    except (OSError, KeyError, zipfile.BadZipFile):
        return None
