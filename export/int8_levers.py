"""Checks of the options that act on int8 files' layers (``--layer-report``,
``--keep-float``), made before any heavy work."""

from __future__ import annotations

from typing import Any

from keras_resnet.export.errors import UsageError


def check_int8_levers(options: Any) -> None:
    """``--layer-report`` needs an int8 ONNX or TFLite file to report on; ``--keep-float``
    see :func:`keep_float.check_keep_float_options`."""
    from keras_resnet.export.keep_float import check_keep_float_options

    check_keep_float_options(options)
    int8_files = "int8" in options.quantize and bool({"onnx", "tflite"} & set(options.formats))
    if options.layer_report and not int8_files:
        raise UsageError("--layer-report reports on int8 files: add --quantize int8 (with the "
                         "onnx or tflite format)")
