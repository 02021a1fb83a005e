"""``export_model``: build every requested artifact in a temporary directory next to the
output, verify each in its own runtime, write the manifest, then move it into place."""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
import socket
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UsageError, VerificationFailed
from .formats import FORMATS, PRECISIONS, QUANTIZE_MODES, ExportJob, format_row, quantizing_formats
from .int8_levers import check_int8_levers
from .keep_float import check_keep_float_names
from .manifest import MANIFEST_NAME, SCHEMA_VERSION, sha256_path, size_bytes, tool_versions
from .targets import TARGETS, apply_target, check_target
from .verify import DEFAULT_MIN_AGREEMENT

DEFAULT_OPSET = 17
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
    calibration: str | None = None
    calibration_method: str = "minmax"
    data: str | None = None
    samples: int = DEFAULT_SAMPLES
    opset: int = DEFAULT_OPSET
    nchw: bool = False
    int8_scheme: str | None = None
    int8_io: str = "int8"
    batch: int | None = None
    static: bool = False
    weights: str | None = None
    classes: int | None = None
    input_size: int | None = None
    labels: str | None = None
    builder: dict[str, Any] = field(default_factory=dict)
    min_agreement: float = DEFAULT_MIN_AGREEMENT
    force: bool = False
    threads: int = 2
    seed: int = 0
    #: Record each quantized layer's error in every int8 file (export/layer_report.py).
    layer_report: bool = False
    #: Keras layers kept float in the int8 files, or ["auto"] (export/keep_float.py).
    keep_float: list[str] | None = None


def validate_options(model: str, output: Path, options: ExportOptions) -> None:
    """Reject bad input before any heavy work; raises UsageError."""
    from .samples import check_source

    _check_formats(options)
    check_target(options)
    check_int8_levers(options)
    _check_unread_options(options)
    for mode in options.quantize:
        if PRECISIONS[QUANTIZE_MODES[mode]].calibrated and not options.calibration:
            raise UsageError(f"--quantize {mode} needs a calibration set: --calibration "
                             "digits | tfds:NAME | folder:PATH | synthetic")
    if options.calibration:
        check_source(options.calibration, "calibration")
    if options.data:
        check_source(options.data, "data")
    _check_numbers(model, options)
    _check_model_argument(model)
    if options.labels and not Path(options.labels).is_file():
        raise UsageError(f"labels file {options.labels} not found")
    check_output(output, options.force, _input_paths(model, options))


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
    from .source import looks_like_keras_file
    from .verify import MAX_SAMPLES, check_verify_arguments

    check_verify_arguments(options.samples, options.threads)
    if options.samples is None or options.threads is None:
        raise UsageError(f"--samples (1..{MAX_SAMPLES}) and --threads must be given")
    if not 0.0 <= options.min_agreement <= 1.0:
        raise UsageError(f"--min-agreement must be in 0..1 (got {options.min_agreement})")
    if options.classes is not None and not 1 <= options.classes <= MAX_CLASSES:
        raise UsageError(f"--classes must be in 1..{MAX_CLASSES} (got {options.classes})")
    if options.input_size is not None:
        least = 1
        if not looks_like_keras_file(model) and model.lower() in _zoo_names():
            import keras_resnet

            least = keras_resnet.model_info(model)["min_input_size"]
        if options.input_size < least:
            raise UsageError(f"--input-size {options.input_size} is too small for {model}: at "
                             f"least {least} (its total stride)")
        if options.input_size > MAX_INPUT_SIZE:
            raise UsageError(f"--input-size must be at most {MAX_INPUT_SIZE} "
                             f"(got {options.input_size})")


def _check_model_argument(model: str) -> None:
    """MODEL names a zoo entry or an existing ``.keras`` file."""
    from .source import looks_like_keras_file

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


def _zoo_names() -> list[str]:
    import keras_resnet

    return keras_resnet.list_models()


def _input_paths(model: str, options: ExportOptions) -> list[Path]:
    """The files and folders this export reads: none may be deleted by ``--force``."""
    from .source import looks_like_keras_file

    paths = [Path(model)] if looks_like_keras_file(model) else []
    if options.weights not in (None, "imagenet") and not options.weights.startswith("timm/"):
        paths.append(Path(options.weights))
    if options.labels:
        paths.append(Path(options.labels))
    for spec in (options.calibration, options.data):
        if spec and spec.startswith("folder:"):
            paths.append(Path(spec[len("folder:"):]))
    return paths


def check_output(output: Path, force: bool, inputs: list[Path]) -> None:
    """Refuse an output that cannot be a directory, or one ``--force`` must not replace:
    a directory holding an input of the export, the current or home directory (or one
    above them), or a training run's directory (``run_config.json`` or ``checkpoints/``)."""
    ancestor = next((p for p in (output, *output.parents) if os.path.lexists(p)), Path("."))
    if ancestor != output and not ancestor.is_dir():
        raise UsageError(f"output {output}: {ancestor} is not a directory")
    if output.exists() and not output.is_dir():
        raise UsageError(f"output {output} exists and is not a directory")
    if not (output.is_dir() and any(output.iterdir())):
        return
    if not force:
        raise UsageError(f"output directory {output} is not empty; use --force to replace it")
    real = output.resolve()
    for path in inputs:
        if _within(path.resolve(), real):
            raise UsageError(f"--force would delete {path}, an input of this export, which lies "
                             f"in {output}; choose another --output")
    for name, place in (("the current directory", Path.cwd()),
                        ("your home", Path(os.path.expanduser("~")))):
        if _within(place.resolve(), real):
            raise UsageError(f"--force will not replace {output}: it holds {name}")
    runs = [p for p in (real, *_children(real)) if (p / "run_config.json").exists()
            or (p / "checkpoints").is_dir()]
    if runs:
        raise UsageError(f"--force will not replace {output}: it holds the training run "
                         f"{runs[0]} (run_config.json or checkpoints/); choose another --output")


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _children(folder: Path) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if p.is_dir() and not p.is_symlink()]
    except OSError:
        return []


def resolve_model(model: str, options: ExportOptions) -> Any:
    """The ModelSource for MODEL: a ``.keras`` file or a zoo name."""
    from .source import from_keras_file, from_zoo, looks_like_keras_file, read_labels

    if looks_like_keras_file(model):
        zoo_only = {"--weights": options.weights, "--classes": options.classes,
                    "--input-size": options.input_size, **{f"--{k.replace('_', '-')}": v
                                                           for k, v in options.builder.items()}}
        given = [name for name, value in zoo_only.items() if value is not None]
        if given:
            raise UsageError(f"{', '.join(given)} only apply to zoo models, not to a .keras file")
        source = from_keras_file(Path(model))
    else:
        source = from_zoo(model, weights=options.weights, classes=options.classes,
                          input_size=options.input_size, builder=options.builder)
    if options.labels:
        source.labels = read_labels(Path(options.labels))
    outputs = source.model.outputs[0].shape
    if source.labels is not None and len(outputs) == 2 and outputs[-1] != len(source.labels):
        raise UsageError(f"{len(source.labels)} labels for a model with {outputs[-1]} outputs")
    return source


def export_model(model: str, output: str | Path, options: ExportOptions | None = None,
                 log: Any = None, **overrides: Any) -> dict[str, Any]:
    """Export MODEL (zoo name or ``.keras`` path) to ``output``; returns the manifest.

    Raises UsageError for bad input (nothing written) and VerificationFailed when an artifact
    fails its parity check (the directory is kept, its manifest marked ``failed``).
    """
    unknown = set(overrides) - set(ExportOptions.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown export option(s): {', '.join(sorted(unknown))}")
    options = apply_target(replace(options or ExportOptions(), **overrides))
    output = Path(output)
    log = log or (lambda message: None)
    started = time.perf_counter()
    validate_options(model, output, options)
    created = _missing_parents(output)
    try:
        staging = make_staging(output)
    except UsageError:
        _remove(created)
        raise
    try:
        source = resolve_model(model, options)
        check_keep_float_names(options.keep_float, source.model)
        calib, x_eval, y_eval, eval_spec = _load_data(source, options)
        manifest = _build(source, staging, options, calib, x_eval, y_eval, eval_spec, log)
        manifest["export_seconds"] = round(time.perf_counter() - started, 1)
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        _move_into_place(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        _remove(created)
        raise
    if manifest["status"] != "passed":
        failed = [f"{a['format']}/{a['precision']}" for a in manifest["artifacts"]
                  if not a["parity"]["passed"]]
        raise VerificationFailed(f"parity check failed for {', '.join(failed)}; "
                                 f"see {output / 'manifest.json'}")
    return manifest


def _remove(created: list[Path]) -> None:
    for parent in created:
        shutil.rmtree(parent, ignore_errors=True)


def _tag() -> str:
    """``PID@HOST``: whose staging folder this is, so a later export can tell stale ones."""
    return f"{os.getpid()}@{socket.gethostname()}"


def make_staging(output: Path) -> Path:
    """Create the hidden staging folder ``.NAME.partial-PID@HOST.<random>`` next to ``output``
    (and ``output``'s missing parents) before any heavy work, after removing the staging
    folders that killed exports into the same place left behind. An unwritable place is a
    UsageError."""
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(output)
        staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.partial-{_tag()}.",
                                        dir=output.parent))
    except OSError as exc:
        raise UsageError(f"cannot write the output directory {output}: "
                         f"{exc.strerror or exc}") from None
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp makes it 0700; the result is a normal directory
    return staging


_STAGING = re.compile(r"\.(?P<name>.+)\.(?:partial|old)-(?P<pid>\d+)@(?P<host>.+)\.[a-z0-9_]+")


def remove_stale_staging(output: Path) -> list[Path]:
    """Delete ``.NAME.partial-*`` and ``.NAME.old-*`` folders of ``output`` whose export
    process (same host) is gone: what SIGKILL or a power cut leaves. Returns them."""
    removed = []
    host = socket.gethostname()
    for path in output.parent.iterdir():
        match = _STAGING.fullmatch(path.name)
        if (match and match["name"] == output.name and match["host"] == host
                and path.is_dir() and not path.is_symlink()
                and not _alive(int(match["pid"]))):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _move_into_place(staging: Path, output: Path) -> None:
    """Rename ``staging`` to ``output``; an existing ``output`` (``--force``) is moved aside
    first and deleted only after the new directory is in place."""
    if not output.exists():
        staging.rename(output)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{output.name}.old-{_tag()}.", dir=output.parent))
    old.rmdir()
    output.rename(old)
    try:
        staging.rename(output)
    except BaseException:
        old.rename(output)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _missing_parents(output: Path) -> list[Path]:
    """Parents of ``output`` that do not exist yet, outermost first."""
    missing = []
    for parent in output.resolve().parents:
        if parent.exists():
            break
        missing.append(parent)
    return list(reversed(missing))


def _load_data(source: Any, options: ExportOptions
               ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None, dict[str, Any]]:
    """Calibration inputs (for int8, a sample of the source's training split) and evaluation
    inputs (a sample of its test split) with their labels where the source has them, all
    model-ready. The split rule is the trainer's (:mod:`keras_resnet.training.data`)."""
    from .samples import load_samples

    size = source.input_shape[:2]
    calib = None
    if options.calibration and "int8" in options.quantize:
        pixels, _ = load_samples(options.calibration, "train", options.samples, size,
                                 seed=options.seed, role="calibration")
        calib = source.preprocess(pixels)
    eval_source = options.data or options.calibration or "synthetic"
    pixels, y_eval = load_samples(eval_source, "test", options.samples, size,
                                  seed=options.seed, role="data" if options.data else "calibration")
    x_eval = source.preprocess(pixels)
    spec = {"source": eval_source, "split": "test", "samples": int(len(x_eval)),
            "seed": options.seed, "labelled": y_eval is not None}
    return calib, x_eval, y_eval, spec


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
                 x_eval: np.ndarray, y_eval: np.ndarray | None, log: Any) -> None:
        self.staging, self.options, self.ref, self.log = staging, options, ref, log
        self.x_eval, self.y_eval = x_eval, y_eval
        self.required = dict(TARGETS[options.target].checks)
        self.artifacts: list[dict[str, Any]] = []

    def __call__(self, fmt: str, precision: str, rel: str, info: dict[str, Any],
                 seconds: float, checks: dict[str, dict[str, Any]] | None = None) -> None:
        from .bench import median_latency_ms
        from .verify import compare, make_runner, run_batched

        artifact = {"format": fmt, "precision": precision, "path": rel, **info}
        if self.options.batch is not None:
            artifact["batch"] = self.options.batch
        runner = make_runner(self.staging, artifact, self.options.threads)
        full = PRECISIONS[precision].by_agreement or self.y_eval is not None
        count = len(self.ref) if full else PARITY_BATCH
        out = run_batched(runner, self.x_eval[:count])
        parity = compare(self.ref[:count], out, precision, self.options.min_agreement,
                         min(PARITY_BATCH, count))
        accuracy = _accuracy(out, self.y_eval[:count] if self.y_eval is not None else None)
        if accuracy is not None:
            parity["test_top1"] = accuracy
        self._apply_checks(f"{fmt}/{precision}", parity, checks or {})
        latency = median_latency_ms(runner, self.x_eval[:1], runs=7, warmup=2)
        artifact.update({"sha256": sha256_path(self.staging / rel),
                         "bytes": size_bytes(self.staging / rel), "parity": parity,
                         "latency_ms": round(latency, 2), "convert_seconds": round(seconds, 1),
                         **({"checks": checks} if checks else {})})
        self.artifacts.append(artifact)
        shown = {k: v for k, v in parity.items()
                 if k in ("max_abs_diff", "top1_agreement", "test_top1", "error")}
        self.log(f"{fmt}/{precision}: {rel} parity {'ok' if parity['passed'] else 'FAILED'} "
                 f"{shown} latency {latency:.2f} ms")

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
    from keras_resnet.cpu import cpu_info

    reference_files = _write_reference(source, staging, x_eval[:PARITY_BATCH])
    ref = _reference_outputs(source, options, x_eval, y_eval, eval_spec, log)
    record = _Recorder(staging, options, ref, x_eval, y_eval, log)
    notes = list(source.notes) + _write_artifacts(ExportJob(source, staging, options, calib),
                                                  record)
    passed = all(a["parity"]["passed"] for a in record.artifacts)
    batch = options.batch
    layers = _layer_report(source, staging, options, record.artifacts, x_eval)
    return {
        "schema_version": SCHEMA_VERSION,
        "status": "passed" if passed else "failed",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": {"name": source.name, "config": source.config},
        "target": options.target,
        "input": {"shape": [batch, *source.input_shape], "dtype": "float32", "layout": "NHWC",
                  "range": "raw RGB pixels 0..255" if source.preprocessing_in_model
                  else f"RGB pixels 0..255 after preprocessing {source.preprocessing!r}",
                  "preprocessing": source.preprocessing,
                  "preprocessing_in_model": source.preprocessing_in_model},
        "output": {"shape": [batch, *[int(d) for d in source.model.outputs[0].shape[1:]]],
                   "kind": "probabilities" if _probabilities(ref) else "values"},
        "labels": source.labels,
        "options": {k: v for k, v in asdict(options).items() if k not in ("force",)},
        "evaluation": eval_spec,
        "tools": tool_versions(),
        "cpu": cpu_info(),
        "reference": reference_files,
        "artifacts": record.artifacts,
        "notes": notes,
        **({"layers": layers} if layers is not None else {}),
    }


def _layer_report(source: Any, staging: Path, options: ExportOptions,
                  artifacts: list[dict[str, Any]], x_eval: np.ndarray) -> dict[str, Any] | None:
    """The per-layer report of every int8 file when ``--layer-report`` asks for it."""
    if not options.layer_report:
        return None
    from .layer_report import DEFAULT_REPORT_IMAGES, keras_layer_classes, layer_reports

    return layer_reports(staging, artifacts, x_eval[:DEFAULT_REPORT_IMAGES],
                         keras_layer_classes(source.model))


def _reference_outputs(source: Any, options: ExportOptions, x_eval: np.ndarray,
                       y_eval: np.ndarray | None, eval_spec: dict[str, Any],
                       log: Any) -> np.ndarray:
    """The Keras model's outputs every artifact is compared with (and its test top-1 into
    ``eval_spec`` when the data is labelled)."""
    from .verify import keras_predict

    quantized = any(PRECISIONS[QUANTIZE_MODES[m]].by_agreement for m in options.quantize)
    # Every sample when quantized models are judged by agreement or accuracy is measured.
    full = quantized or y_eval is not None
    reference_count = len(x_eval) if full else min(PARITY_BATCH, len(x_eval))
    log(f"keras: reference outputs on {reference_count} samples")
    ref = keras_predict(source.model, x_eval[:reference_count])
    keras_accuracy = _accuracy(ref, y_eval)
    if keras_accuracy is not None:
        eval_spec["keras_top1"] = keras_accuracy
        log(f"keras: test top-1 {keras_accuracy * 100:.2f}% on {len(ref)} labelled samples")
    return ref


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
    from .verify import is_probabilities

    return is_probabilities(ref)


def _write_reference(source: Any, staging: Path, parity: np.ndarray) -> dict[str, Any]:
    """The Keras model and the parity batch, kept for verify and bench."""
    keras_path = staging / "model.keras"
    if source.keras_path is not None:
        shutil.copyfile(source.keras_path, keras_path)
    else:
        source.model.save(keras_path)
    np.save(staging / "parity_inputs.npy", parity.astype(np.float32))
    return {name: {"path": rel, "sha256": sha256_path(staging / rel),
                   "bytes": size_bytes(staging / rel)}
            for name, rel in (("keras_model", "model.keras"),
                              ("parity_inputs", "parity_inputs.npy"))}
