"""SavedModel export with a ``serving_default`` signature (dynamic or static batch)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from keras_resnet.export.formats import ExportJob, Written


INPUT_KEY = "input"
OUTPUT_KEY = "output"


def build_saved_model(model: Any, path: Path, input_shape: tuple[int, int, int],
                      batch: int | None = None) -> dict[str, Any]:
    """Write ``model`` as a SavedModel at ``path`` (dynamic batch unless ``batch``); returns
    the signature description.

    A plain ``tf.Module`` holding the variables once: Keras' ``ExportArchive`` (and
    ``model.export``) store every variable twice in Keras 3.15, doubling the file size.
    """
    import tensorflow as tf

    module = tf.Module()
    module.model_variables = [v.value if hasattr(v, "value") else v for v in model.variables]

    @tf.function(input_signature=[tf.TensorSpec((batch, *input_shape), tf.float32,
                                                name=INPUT_KEY)], autograph=False)
    def serve(input: tf.Tensor) -> dict[str, tf.Tensor]:  # noqa: A002 - the signature key
        return {OUTPUT_KEY: model(input, training=False)}

    module.serve = serve
    tf.saved_model.save(module, str(path), signatures={"serving_default": serve})
    return {"signature": "serving_default", "inputs": {INPUT_KEY: [batch, *input_shape]},
            "outputs": [OUTPUT_KEY]}


class SavedModelRunner:
    """Runs a SavedModel's ``serving_default`` signature with ``tf.saved_model.load``."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        import tensorflow as tf

        self._loaded = tf.saved_model.load(str(path))
        self._fn = self._loaded.signatures["serving_default"]
        self._tf = tf

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = self._fn(**{INPUT_KEY: self._tf.constant(x, self._tf.float32)})
        return out[OUTPUT_KEY].numpy()


def saved_model_dir(job: ExportJob) -> tuple[str, dict[str, Any]]:
    """The job's SavedModel (its path in the staging directory and its signature), built
    once: the ``saved_model`` artifact when that format is asked for, else a hidden
    directory that TFLite converts from and the export removes at the end."""
    from keras_resnet.export.formats import FORMATS

    if "saved_model" not in job.shared:
        keep = "saved_model" in job.options.formats
        rel = FORMATS["saved_model"].file_name("float32") if keep else ".saved_model_for_tflite"
        signature = build_saved_model(job.source.model, job.staging / rel,
                                      job.source.input_shape, job.options.batch)
        if not keep:
            job.scratch.append(job.staging / rel)
        job.shared["saved_model"] = (rel, signature)
    return job.shared["saved_model"]


def write_artifact(job: ExportJob, precision: str) -> Written:
    """The converter of the ``saved_model`` row (float32 only)."""
    from keras_resnet.export.formats import FORMATS, Written

    FORMATS["saved_model"].file_name(precision)  # refuses a precision it does not have
    rel, signature = saved_model_dir(job)
    return Written(rel, {"layout": "NHWC", **signature})


def open_runner(path: Path, threads: int | None, artifact: dict[str, Any]) -> SavedModelRunner:
    """The runner of the ``saved_model`` row."""
    return SavedModelRunner(path, threads)
