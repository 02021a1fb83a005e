"""Parity checks (artifact vs Keras model) and ``verify_dir``: integrity plus parity of an
export directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from keras_resnet.export.errors import UsageError
from keras_resnet.export.formats import FORMATS, PRECISIONS
from keras_resnet.export.manifest import read_manifest, resolve_inside, sha256_path

#: Largest allowed difference of float files, by precision: of log-probabilities relative
#: to the logits' scale where the model ends in a softmax, of probabilities where a softmax
#: output has no logits to read, of outputs relative to their scale otherwise. "bfloat16"
#: judges a float file a runtime computed in bfloat16 (8-bit significands: a relative error
#: of 2**-8 per rounding, accumulated over the network's depth).
MAX_ABS_DIFF = {"float32": 1e-4, "float16": 1e-2, "bfloat16": 5e-2}
#: Precisions judged by top-1 agreement with the Keras model instead.
AGREEMENT_PRECISIONS = tuple(name for name, p in PRECISIONS.items() if p.by_agreement)
DEFAULT_MIN_AGREEMENT = 0.98
#: Smallest probability whose logarithm a float32 softmax still resolves (well above the
#: float32 normal minimum, 1.2e-38): entries below it are not compared.
RESOLVABLE = 1e-30


def is_probabilities(y: np.ndarray) -> bool:
    """True for (batch, classes) outputs in [0, 1] whose rows sum to 1."""
    return (y.ndim == 2 and bool(np.all(y >= -1e-6)) and bool(np.all(y <= 1 + 1e-6))
            and bool(np.allclose(y.sum(axis=1), 1.0, atol=1e-3)))


def compare(reference: np.ndarray, output: np.ndarray, precision: str,
            min_agreement: float = DEFAULT_MIN_AGREEMENT, parity_count: int | None = None,
            logits: np.ndarray | None = None, file_logits: np.ndarray | None = None,
            by_agreement: bool = False) -> dict[str, Any]:
    """Parity figures of ``output`` against the Keras ``reference`` and whether they pass.

    Float precisions are judged over the first ``parity_count`` samples: on logits when
    ``logits`` (the input of the Keras model's final softmax) is given: against the file's
    own pre-softmax tensor (``file_logits``) where it could be read, else by the largest
    difference of log-probabilities (logits up to a per-row constant) where the reference
    probability is resolvable, relative to the logits' scale; otherwise on the outputs
    (relative to their scale unless they are probabilities). Rows whose softmax is saturated
    (one class holds all the probability) are counted and named. Quantized precisions are
    judged on top-1 agreement over all samples, as is every file with ``by_agreement`` (the
    files of a quantization-aware model, which round as it does).
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
    if reference.ndim == 2:
        agree = np.argmax(reference, axis=1) == np.argmax(output, axis=1)
        figures["top1_agreement"] = float(np.mean(agree))
        figures["agreement_samples"] = int(len(agree))
    if probabilities:
        figures["saturated_rows"] = int(np.sum(np.max(reference[:count], axis=1)
                                               >= np.float32(1) - np.float32(6e-8)))
    if (precision in AGREEMENT_PRECISIONS or by_agreement) and reference.ndim == 2:
        figures["min_agreement"] = float(min_agreement)
        figures["passed"] = figures["top1_agreement"] >= min_agreement
        return figures
    limit = MAX_ABS_DIFF.get(precision, MAX_ABS_DIFF["float16"])
    figures["max_diff_limit"] = limit
    if logits is not None and file_logits is not None:
        figures.update(_direct_logit_figures(np.asarray(logits)[:count],
                                             np.asarray(file_logits)[:count]))
        measured = figures["rel_logit_diff"]
    elif logits is not None and probabilities:
        figures.update(_logit_figures(np.asarray(logits)[:count], output[:count]))
        measured = figures["rel_logit_diff"]
    elif probabilities:
        figures["judged_on"] = "probabilities (no logits: the model's softmax was not found)"
        measured = diff
    else:
        figures["judged_on"] = "outputs relative to their scale"
        figures["max_rel_diff"] = diff / max(1.0, float(np.max(np.abs(reference[:count]))))
        measured = figures["max_rel_diff"]
    figures["passed"] = measured <= limit
    if figures.get("compared_entries") == count and "top1_agreement" in figures:
        # every row saturated: the probabilities say nothing beyond the top class
        figures["judged_on"] = (f"top-1 agreement only (all {len(agree)} images): softmax "
                                f"saturated on all {count} rows, no other probability is "
                                "resolvable")
        figures["passed"] = bool(np.all(agree))
    return figures


def judged_precision(precision: str, runner: Any) -> str:
    """The tolerance a file's outputs are judged by: "bfloat16" for a float file its runtime
    computed in bfloat16 (OpenVINO's default on BF16 CPUs), else the file's precision."""
    computed = getattr(runner, "inference_precision", None)
    if computed == "bf16" and precision in MAX_ABS_DIFF:
        return "bfloat16"
    return precision


def _direct_logit_figures(logits: np.ndarray, file_logits: np.ndarray) -> dict[str, Any]:
    """Largest difference of the file's logits from Keras', relative to their scale (both
    centred per row: a softmax ignores a row's constant)."""
    z = logits.astype(np.float64)
    z = z - np.mean(z, axis=1, keepdims=True)
    f = file_logits.astype(np.float64).reshape(z.shape)
    f = f - np.mean(f, axis=1, keepdims=True)
    delta = float(np.max(np.abs(f - z)))
    scale = max(1.0, float(np.max(np.abs(z))))
    return {"judged_on": "logits: the file's pre-softmax tensor, relative to the logits' "
            "scale", "logit_diff": delta, "logit_scale": scale, "rel_logit_diff": delta / scale}


def _logit_figures(logits: np.ndarray, output: np.ndarray) -> dict[str, Any]:
    """Largest |log p_file - log p_keras| over resolvable entries, and the logits' scale."""
    z = logits.astype(np.float64)
    z = z - np.max(z, axis=1, keepdims=True)
    ref_logp = z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))
    out_logp = np.log(np.maximum(output.astype(np.float64), np.finfo(np.float32).tiny))
    resolvable = ref_logp >= np.log(RESOLVABLE)
    delta = float(np.max(np.abs(out_logp - ref_logp)[resolvable]))
    scale = max(1.0, float(np.max(np.abs(z - np.mean(z, axis=1, keepdims=True)))))
    return {"judged_on": "logits: log-probabilities relative to the logits' scale",
            "logit_diff": delta, "logit_scale": scale, "rel_logit_diff": delta / scale,
            "compared_entries": int(np.sum(resolvable))}


def parity_text(parity: dict[str, Any]) -> str:
    """A parity result in a few words, naming its image count and a saturated softmax."""
    if "error" in parity and "parity_samples" not in parity:
        return parity["error"]
    if "min_agreement" in parity:
        return (f"top-1 {parity['top1_agreement'] * 100:.1f}% of "
                f"{parity['agreement_samples']}")
    count = parity["parity_samples"]
    if str(parity.get("judged_on", "")).startswith("top-1 agreement only"):
        agreeing = round(parity["top1_agreement"] * parity["agreement_samples"])
        return (f"top-1 {agreeing}/{parity['agreement_samples']} only: softmax saturated "
                f"{parity['saturated_rows']}/{count}, no logits")
    if "rel_logit_diff" in parity:
        text = f"logits rel {parity['rel_logit_diff']:.1e} on {count}"
    elif "max_rel_diff" in parity:
        text = f"rel {parity['max_rel_diff']:.1e} on {count}"
    else:
        text = f"max|d| {parity['max_abs_diff']:.1e} on {count}"
    if parity.get("saturated_rows"):
        text += f", softmax saturated {parity['saturated_rows']}/{count}"
    return text


def logits_model(model: Any) -> Any | None:
    """A model sharing ``model``'s weights that outputs the input of its final softmax (a
    Softmax/Activation layer, or a layer with ``activation="softmax"``, looking inside a
    nested model); None when the model does not end in a softmax."""
    import keras

    try:
        out = _pre_softmax(model, model.outputs[0])
    except (AttributeError, IndexError, TypeError, ValueError):
        return None
    return None if out is None else keras.Model(model.inputs, out)


def _pre_softmax(model: Any, tensor: Any) -> Any | None:
    """The tensor before the softmax that produces ``tensor`` in ``model``'s graph."""
    import keras

    layer, node_index, _ = tensor._keras_history
    inputs = layer._inbound_nodes[node_index].input_tensors
    if len(inputs) != 1:
        return None
    if isinstance(layer, keras.Model):
        inner = logits_model(layer)
        return None if inner is None else inner(inputs[0])
    if isinstance(layer, keras.layers.Softmax):
        return inputs[0] if layer.axis in (-1, 1) else None
    activation = getattr(layer, "activation", None)
    if getattr(activation, "__name__", "") != "softmax":
        return None
    if isinstance(layer, keras.layers.Activation):
        return inputs[0]
    config = {**layer.get_config(), "activation": "linear", "name": f"{layer.name}_logits"}
    linear = type(layer).from_config(config)
    linear.build(inputs[0].shape)
    linear.set_weights(layer.get_weights())
    return linear(inputs[0])


def file_logits(directory: Path, artifact: dict[str, Any], threads: int | None,
                logits: np.ndarray | None, x: np.ndarray) -> np.ndarray | None:
    """The file's own logits on ``x`` where the Keras model has logits and the file's
    format can expose them (:mod:`.logits`); None otherwise."""
    from keras_resnet.export.logits import logits_runner

    runner = None if logits is None else logits_runner(directory, artifact, threads)
    return None if runner is None else run_batched(runner, x)


def reference_outputs(model: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The Keras model's outputs and, where it ends in a softmax, its logits."""
    ref = keras_predict(model, x)
    pre = logits_model(model) if is_probabilities(ref) else None
    return ref, None if pre is None else keras_predict(pre, x)


def make_runner(directory: Path, artifact: dict[str, Any], threads: int | None = None) -> Any:
    """A callable NHWC float32 -> float32 outputs for one manifest artifact (its path must
    stay inside ``directory``); a file with a static batch is fed whole batches."""
    runner = _runtime_runner(directory, artifact, threads)
    batch = artifact.get("batch")
    if isinstance(batch, int) and not isinstance(batch, bool) and batch > 0:
        return StaticBatch(runner, batch)
    return runner


class StaticBatch:
    """Feeds a static-batch file exactly ``batch`` inputs per call (the last chunk padded by
    repeating its first input) and returns one output per input."""

    def __init__(self, runner: Any, batch: int) -> None:
        self.runner, self.batch = runner, batch
        self.inference_precision = getattr(runner, "inference_precision", None)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        outputs = []
        for start in range(0, len(x), self.batch):
            chunk = x[start:start + self.batch]
            padded = np.concatenate([chunk, np.repeat(chunk[:1], self.batch - len(chunk), 0)])
            outputs.append(np.asarray(self.runner(padded))[:len(chunk)])
        return np.concatenate(outputs)


def _runtime_runner(directory: Path, artifact: dict[str, Any], threads: int | None) -> Any:
    """The runner its format's row names, for the file the artifact names."""
    path = resolve_inside(Path(directory), artifact["path"])
    row = FORMATS.get(artifact["format"])
    if row is None:
        raise UsageError(f"unknown artifact format {artifact['format']!r} in manifest")
    return row.open_runner(path, threads, artifact)


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


def check_integrity(directory: Path, manifest: dict[str, Any]) -> dict[str, str]:
    """What is wrong with each recorded file, by key: it leads outside the directory (a
    symbolic link; not read), is missing, or has changed (SHA-256). Intact files are absent."""
    problems: dict[str, str] = {}
    entries = [(artifact_key(a), a) for a in manifest["artifacts"]]
    entries += [(reference_key(name, entry), entry)
                for name, entry in manifest.get("reference", {}).items()]
    for key, entry in entries:
        try:
            path = resolve_inside(Path(directory), entry["path"])
        except UsageError as exc:
            problems[key] = str(exc).removeprefix(f"manifest path {entry['path']!r}: ")
            continue
        if not path.exists():
            problems[key] = "file missing"
        elif sha256_path(path) != entry["sha256"]:
            problems[key] = "SHA-256 mismatch: the file has changed since the export"
    return problems


def reference_key(name: str, entry: dict[str, Any]) -> str:
    """A readable name for a reference file: ``reference keras_model (model.keras)``."""
    return f"reference {name} ({entry['path']})"


#: Most images ``--samples`` may draw (calibration and evaluation sets are held in memory).
MAX_SAMPLES = 10000
#: Most threads a runtime may be given.
MAX_THREADS = 1024


def check_verify_arguments(samples: int | None, threads: int | None) -> None:
    """``samples`` in 1..MAX_SAMPLES (or None) and ``threads`` in 1..MAX_THREADS (or None)."""
    if samples is not None and not 1 <= samples <= MAX_SAMPLES:
        raise UsageError(f"--samples must be in 1..{MAX_SAMPLES} (got {samples})")
    if threads is not None and not 1 <= threads <= MAX_THREADS:
        raise UsageError(f"--threads must be in 1..{MAX_THREADS} (got {threads})")


def verify_dir(directory: str | Path, data: str | None = None, samples: int | None = None,
               threads: int | None = 2) -> dict[str, Any]:
    """Recompute every artifact's SHA-256 and rerun parity against the stored Keras model.

    Returns ``{"passed", "problems", "artifacts": [...], "data"}``. Parity runs on the stored
    parity batch, plus ``data`` (a source such as ``digits`` or ``folder:PATH``) for top-1
    agreement; without ``data``, on the export's recorded evaluation source unless that is a
    folder. Only files inside ``directory`` are read (symbolic links leaving it are
    refused); bad arguments or an unreadable manifest raise UsageError.
    """
    directory = Path(directory)
    check_verify_arguments(samples, threads)
    manifest = read_manifest(directory)
    min_agreement = _min_agreement(manifest)
    if data:
        from keras_resnet.export.samples import check_source

        check_source(data, "data")
    broken = check_integrity(directory, manifest)
    problems = [f"{key}: {problem}" for key, problem in broken.items()]
    reference = manifest.get("reference", {})
    if any(k.startswith("reference") for k in broken) or not (
            reference.get("keras_model") and reference.get("parity_inputs")):
        return _not_rerun(manifest, broken, problems, "reference Keras model or parity inputs "
                          "unusable")
    try:
        model, x = _load_reference(directory, reference)
    except Exception as exc:  # safe_mode refusals, zip/HDF5/npy errors: the files are bad
        text = str(exc).strip().splitlines()
        return _not_rerun(manifest, broken, problems, f"reference files cannot be loaded "
                          f"({type(exc).__name__}: {text[0] if text else ''})")
    x_all, shown = _evaluation_inputs(manifest, x, data, samples)
    ref, logits = reference_outputs(model, x_all)
    results = []
    for artifact in manifest["artifacts"]:
        key = artifact_key(artifact)
        if key in broken:
            results.append({"artifact": key, "passed": False, "error": broken[key]})
            continue
        try:
            runner = make_runner(directory, artifact, threads)
            out = run_batched(runner, x_all)
            figures = compare(ref, out, judged_precision(artifact["precision"], runner),
                              min_agreement, len(x), logits=logits, file_logits=file_logits(
                                  directory, artifact, threads, logits, x),
                              by_agreement="qat" in manifest)
        except Exception as exc:  # a runtime that cannot load or run the file is a failure
            figures = {"passed": False, "error": f"{type(exc).__name__}: {exc}"}
        if not figures["passed"]:
            problems.append(f"{key}: parity check failed {_summary(figures)}")
        results.append({"artifact": key, **figures})
    return {"passed": not problems, "problems": problems, "artifacts": results, "data": shown,
            **_cpus(manifest)}


def _not_rerun(manifest: dict[str, Any], broken: dict[str, str], problems: list[str],
               reason: str) -> dict[str, Any]:
    """The report when the reference files cannot be used: parity is not rerun."""
    problems.append(f"{reason}: parity not rerun")
    results = [{"artifact": artifact_key(a), "passed": False,
                "error": broken.get(artifact_key(a), "parity not rerun")}
               for a in manifest["artifacts"]]
    return {"passed": False, "problems": problems, "artifacts": results,
            "data": "none (parity not rerun)", **_cpus(manifest)}


def _cpus(manifest: dict[str, Any]) -> dict[str, Any]:
    """The CPU verifying now, and the one the export measured on (as recorded)."""
    from keras_resnet.cpu import cpu_info

    return {"cpu": cpu_info(), "exported_on": manifest.get("cpu")}


def _load_reference(directory: Path, reference: dict[str, Any]) -> tuple[Any, np.ndarray]:
    """The stored Keras model (``safe_mode``) and parity batch, both inside ``directory``."""
    import keras_resnet

    model = keras_resnet.load_model(resolve_inside(directory, reference["keras_model"]["path"]))
    x = np.load(resolve_inside(directory, reference["parity_inputs"]["path"]),
                allow_pickle=False)
    return model, np.asarray(x, np.float32)


def _evaluation_inputs(manifest: dict[str, Any], x: np.ndarray, source: str | None,
                       samples: int | None) -> tuple[np.ndarray, str]:
    """The stored parity batch plus evaluation images (the test split of ``source`` or of
    the recorded source), and a description of the data naming its image counts."""
    from keras_resnet.export.samples import load_samples

    spec = manifest["input"]
    evaluation = manifest.get("evaluation")
    evaluation = evaluation if isinstance(evaluation, dict) else {}
    eval_source, note = (source, None) if source else _recorded_source(evaluation)
    stored = f"the {len(x)} stored images (parity_inputs.npy)"
    if eval_source is None:
        return x, f"{stored}; {note}" if note else stored
    count = samples or min(_int(evaluation.get("samples"), 100), MAX_SAMPLES)
    pixels, _ = load_samples(eval_source, "test", count, tuple(spec["shape"][1:3]),
                             seed=_int(evaluation.get("seed"), 0))
    extra = manifest_preprocess(manifest)(pixels)
    return np.concatenate([x, extra]), (f"{len(extra)} images of {eval_source}'s test split "
                                        f"and {stored}")


def manifest_preprocess(manifest: dict[str, Any]) -> Any:
    """Raw RGB 0..255 pixels -> model input, by the manifest's input contract (or, for a
    manifest written before contracts, by its recorded preprocessing)."""
    from keras_resnet.export.contract import contract_from_json
    from keras_resnet.export.source import preprocess_fn

    spec = manifest["input"]
    contract = contract_from_json(spec.get("contract"))
    if contract is not None:
        return contract.to_model
    return preprocess_fn(str(spec.get("preprocessing", "")),
                         bool(spec.get("preprocessing_in_model", True)))


def _min_agreement(manifest: dict[str, Any]) -> float:
    options = manifest.get("options")
    value = (options if isinstance(options, dict) else {}).get("min_agreement",
                                                                 DEFAULT_MIN_AGREEMENT)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise UsageError(f"manifest 'options.min_agreement' {value!r} is not in 0..1")
    return float(value)


def _recorded_source(evaluation: dict[str, Any]) -> tuple[str | None, str | None]:
    """The evaluation source the manifest records, unless it names a path: a ``folder:``
    outside the export directory is not read (pass ``--data`` to use it)."""
    from keras_resnet.training.data import TFDS_ALIASES

    recorded = evaluation.get("source")
    if not isinstance(recorded, str) or not recorded:
        return None, None
    if evaluation.get("in_memory"):
        return None, f"the export evaluated on in-memory images ({recorded}); pass --data " \
                     "to check on more"
    if recorded not in ("digits", "synthetic", *TFDS_ALIASES) and not (
            recorded.startswith("tfds:") and recorded != "tfds:"):
        return None, (f"recorded source {recorded!r} not read (outside the export "
                      "directory; pass --data to use it)")
    return recorded, None


def _int(value: Any, default: int) -> int:
    """``value`` when it is a positive int (not a bool), else ``default``."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 \
        else default


def _summary(figures: dict[str, Any]) -> str:
    text = parity_text(figures)
    if "error" in figures and text != figures["error"]:
        text += f"; {figures['error']}"
    return f"({text})"
