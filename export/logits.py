"""Read the logits (the input of the final softmax) out of an exported file, so that float
files are compared with the Keras model before the softmax flattens the differences: ONNX by
adding the Softmax node's input as a graph output of an in-memory copy, TFLite by reading the
SOFTMAX op's input tensor with all tensors preserved. Other formats have no reader (None)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
from keras_resnet.export.manifest import resolve_inside
from keras_resnet.export.verify import StaticBatch


def logits_runner(directory: Path, artifact: dict[str, Any], threads: int | None
                  ) -> Any | None:
    """A callable NHWC float32 -> logits for a float file that ends in a softmax; None
    where the format or the file offers none."""
    if artifact.get("precision") not in ("float32", "float16"):
        return None
    readers = {"onnx": _onnx_logits, "tflite": _tflite_logits}
    reader = readers.get(artifact.get("format", ""))
    if reader is None:
        return None
    try:
        runner = reader(resolve_inside(Path(directory), artifact["path"]), threads,
                        artifact.get("layout") == "NCHW")
    except (ImportError, OSError, ValueError, RuntimeError, KeyError, IndexError):
        return None
    batch = artifact.get("batch")
    if runner is not None and isinstance(batch, int) and not isinstance(batch, bool) \
            and batch > 0:
        return StaticBatch(runner, batch)
    return runner


def _onnx_logits(path: Path, threads: int | None, nchw: bool) -> Any | None:
    import onnx
    import onnxruntime as ort

    proto = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    softmax = [node for node in proto.graph.node if node.op_type == "Softmax"]
    if not softmax:
        return None
    name = softmax[-1].input[0]
    info = [v for v in proto.graph.value_info if v.name == name]
    if not info:
        return None
    proto.graph.output.append(info[0])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or 2
    options.log_severity_level = 3
    session = ort.InferenceSession(proto.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if nchw else x
        out = session.run([name], {feed: np.asarray(x, np.float32)})[0]
        return np.asarray(out, np.float32)

    return run


def _tflite_logits(path: Path, threads: int | None, nchw: bool) -> Any | None:
    from ai_edge_litert.interpreter import Interpreter

    with warnings.catch_warnings():  # "for debugging": what reading a middle tensor needs
        warnings.simplefilter("ignore")
        interpreter = Interpreter(model_path=str(path), num_threads=threads or 2,
                                  experimental_preserve_all_tensors=True)
    ops = [op for op in interpreter._get_ops_details() if op["op_name"] == "SOFTMAX"]
    if not ops:
        return None
    tensor = int(ops[-1]["inputs"][0])
    feed = interpreter.get_input_details()[0]
    if feed["dtype"] != np.float32:
        return None
    state = {"batch": -1}

    def run(x: np.ndarray) -> np.ndarray:
        if x.shape[0] != state["batch"]:
            interpreter.resize_tensor_input(feed["index"], list(x.shape))
            interpreter.allocate_tensors()
            state["batch"] = x.shape[0]
        interpreter.set_tensor(feed["index"], np.ascontiguousarray(x, np.float32))
        interpreter.invoke()
        return np.array(interpreter.get_tensor(tensor), np.float32)

    return run
