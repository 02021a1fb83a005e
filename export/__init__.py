"""Export keras-resnet models to SavedModel, TFLite, ONNX and OpenVINO IR, each artifact
verified in its own runtime.

>>> from keras_resnet.export import export_model, verify_dir, bench_dir
>>> manifest = export_model("resnet20", "artifacts/resnet20", quantize=["int8"],
...                         calibration="digits")
>>> verify_dir("artifacts/resnet20")["passed"]
True
"""

from .api import ExportOptions, export_model
from .bench import bench_dir
from .errors import ExportError, UsageError, VerificationFailed
from .verify import verify_dir

__all__ = [
    "ExportError", "ExportOptions", "UsageError", "VerificationFailed", "bench_dir",
    "export_model", "verify_dir",
]
