"""Export keras-resnet models to SavedModel, TFLite, ONNX and OpenVINO IR, each artifact
verified in its own runtime.

>>> from keras_resnet.export import export_model, verify_dir, bench_dir
>>> manifest = export_model("resnet20", "artifacts/resnet20", quantize=["int8"],
...                         calibration="digits")
>>> verify_dir("artifacts/resnet20")["passed"]
True
"""

from keras_resnet.export.api import ExportOptions, export_model
from keras_resnet.export.bench import bench_dir
from keras_resnet.export.errors import ExportError, UsageError, VerificationFailed
from keras_resnet.export.verify import verify_dir

__all__ = [
    "ExportError", "ExportOptions", "UsageError", "VerificationFailed", "bench_dir",
    "export_model", "verify_dir",
]
