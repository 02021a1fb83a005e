"""Parity checks (artifact vs Keras model) and ``verify_dir``: integrity plus parity of an
export directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .errors import UsageError
from .manifest import read_manifest, sha256_path

#: Largest allowed max-absolute-difference of output probabilities, by precision.
MAX_ABS_DIFF = {"float32": 1e-4, "float16": 1e-2}
#: Precisions judged by top-1 agreement with the Keras model instead.
AGREEMENT_PRECISIONS = ("dynamic_int8", "int8")
DEFAULT_MIN_AGREEMENT = 0.98


def is_probabilities(y: np.ndarray) -> bool:
    """True for (batch, classes) outputs in [0, 1] whose rows sum to 1."""
    return (y.ndim == 2 and bool(np.all(y >= -1e-6)) and bool(np.all(y <= 1 + 1e-6))
            and bool(np.allclose(y.sum(axis=1), 1.0, atol=1e-3)))


def compare(reference: np.ndarray, output: np.ndarray, precision: str,
            min_agreement: float = DEFAULT_MIN_AGREEMENT, parity_count: int | None = None
            ) -> dict[str, Any]:
    """Parity figures of ``output`` against the Keras ``reference`` and whether they pass.

    Float precisions are judged on the max absolute difference over the first
    ``parity_count`` samples (relative to the output's scale for non-probability outputs);
    quantized ones on top-1 agreement over all samples.
    """
    reference = np.asarray(reference, np.float32)
    output = np.asarray(output, np.float32)
    if reference.shape != output.shape:
        return {"passed": False, "error": f"output shape {list(output.shape)} != Keras "
                f"{list(reference.shape)}"}
    count = parity_count or len(reference)
    diff = float(np.max(np.abs(reference[:count] - output[:count])))
    figures: dict[str, Any] = {"parity_samples": int(count), "max_abs_diff": diff}
    probabilities = is_probabilities(reference)
    if not probabilities:
        figures["max_rel_diff"] = diff / max(1.0, float(np.max(np.abs(reference[:count]))))
    if reference.ndim == 2:
        agree = np.argmax(reference, axis=1) == np.argmax(output, axis=1)
        figures["top1_agreement"] = float(np.mean(agree))
        figures["agreement_samples"] = int(len(agree))
    if precision in AGREEMENT_PRECISIONS and reference.ndim == 2:
        figures["min_agreement"] = float(min_agreement)
        figures["passed"] = figures["top1_agreement"] >= min_agreement
    else:
        limit = MAX_ABS_DIFF.get(precision, MAX_ABS_DIFF["float16"])
        measured = diff if probabilities else figures["max_rel_diff"]
        figures["max_abs_diff_limit"] = limit
        figures["passed"] = measured <= limit
    return figures


def make_runner(directory: Path, artifact: dict[str, Any], threads: int | None = None) -> Any:
    """A callable NHWC float32 -> float32 outputs for one manifest artifact."""
    path = Path(directory) / artifact["path"]
    if artifact["format"] == "saved_model":
        from .saved_model import SavedModelRunner

        return SavedModelRunner(path, threads)
    if artifact["format"] == "tflite":
        from .tflite import TFLiteRunner

        return TFLiteRunner(path, threads)
    if artifact["format"] == "onnx":
        from .onnx_export import OnnxRunner

        return OnnxRunner(path, threads, nchw=artifact.get("layout") == "NCHW")
    raise UsageError(f"unknown artifact format {artifact['format']!r} in manifest")


def run_batched(fn: Any, x: np.ndarray, batch: int = 32) -> np.ndarray:
    """Apply ``fn`` to ``x`` in batches and concatenate."""
    return np.concatenate([np.asarray(fn(x[i:i + batch])) for i in range(0, len(x), batch)])


def keras_predict(model: Any, x: np.ndarray) -> np.ndarray:
    """The Keras model's outputs (inference mode)."""
    import keras

    return run_batched(lambda b: keras.ops.convert_to_numpy(model(b, training=False)), x)


def artifact_key(artifact: dict[str, Any]) -> str:
    """A readable name for an artifact: ``tflite/int8 (model_int8.tflite)``."""
    return f"{artifact['format']}/{artifact['precision']} ({artifact['path']})"


def check_integrity(directory: Path, manifest: dict[str, Any]) -> list[str]:
    """Problems with the recorded files: missing or changed (SHA-256), each naming the file."""
    problems = []
    entries = [(artifact_key(a), a) for a in manifest["artifacts"]]
    entries += [(f"reference {name} ({entry['path']})", entry)
                for name, entry in manifest.get("reference", {}).items()]
    for key, entry in entries:
        path = Path(directory) / entry["path"]
        if not path.exists():
            problems.append(f"{key}: file missing")
        elif sha256_path(path) != entry["sha256"]:
            problems.append(f"{key}: SHA-256 mismatch (file changed)")
    return problems


def verify_dir(directory: str | Path, data: str | None = None, samples: int | None = None,
               threads: int | None = 2) -> dict[str, Any]:
    """Recompute every artifact's SHA-256 and rerun parity against the stored Keras model.

    Returns ``{"passed", "problems", "artifacts": [...]}``. Parity runs on the stored parity
    batch, plus ``data`` (a source such as ``digits`` or ``folder:PATH``) for top-1
    agreement; without ``data``, on the export's recorded evaluation source.
    """
    import keras_resnet
    from keras_resnet.cpu import cpu_info

    from .calibration import load_images, parse_source
    from .source import preprocess_fn

    directory = Path(directory)
    manifest = read_manifest(directory)
    source = parse_source(data) if data else None
    problems = check_integrity(directory, manifest)
    results: list[dict[str, Any]] = []
    broken = {p.split(":")[0] for p in problems}
    reference = manifest.get("reference", {})
    keras_entry = reference.get("keras_model")
    parity_entry = reference.get("parity_inputs")
    usable = (keras_entry and parity_entry
              and not any(k.startswith("reference") for k in broken))
    if not usable:
        problems.append("reference Keras model or parity inputs unusable: parity not rerun")
        return {"passed": False, "problems": problems, "artifacts": results, "cpu": cpu_info()}
    model = keras_resnet.load_model(directory / keras_entry["path"])  # safe_mode
    x = np.load(directory / parity_entry["path"])
    parity_count = len(x)
    spec = manifest["input"]
    evaluation = manifest.get("evaluation", {})
    eval_source = source or (parse_source(evaluation["source"])
                             if evaluation.get("source") else None)
    if eval_source is not None:
        count = samples or evaluation.get("samples") or 100
        pixels = load_images(eval_source, count, tuple(spec["shape"][1:3]),
                             seed=evaluation.get("seed", 0))
        extra = preprocess_fn(spec["preprocessing"], spec["preprocessing_in_model"])(pixels)
        x = np.concatenate([x, extra])
    ref = keras_predict(model, x)
    min_agreement = manifest.get("options", {}).get("min_agreement", DEFAULT_MIN_AGREEMENT)
    for artifact in manifest["artifacts"]:
        key = artifact_key(artifact)
        if key in broken:
            results.append({"artifact": key, "passed": False, "error": "integrity check failed"})
            continue
        try:
            out = run_batched(make_runner(directory, artifact, threads), x)
            figures = compare(ref, out, artifact["precision"], min_agreement, parity_count)
        except Exception as exc:  # a runtime that cannot load or run the file is a failure
            figures = {"passed": False, "error": f"{type(exc).__name__}: {exc}"}
        if not figures["passed"]:
            problems.append(f"{key}: parity check failed {_summary(figures)}")
        results.append({"artifact": key, **figures})
    return {"passed": not problems, "problems": problems, "artifacts": results,
            "data": str(eval_source) if eval_source else "stored parity batch",
            "cpu": cpu_info(), "exported_on": manifest.get("cpu")}


def _summary(figures: dict[str, Any]) -> str:
    shown = {k: figures[k] for k in ("max_abs_diff", "top1_agreement", "error") if k in figures}
    return "(" + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in shown.items()) + ")"
