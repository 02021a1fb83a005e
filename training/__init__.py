"""The keras-resnet trainer: one ``tf.distribute`` custom loop for every strategy.

Python first: :func:`train` trains a zoo network or a ``keras.Model`` built in code on a
source name, numpy arrays or a ``tf.data.Dataset`` and returns a :class:`TrainResult`;
:func:`evaluate` measures a trained ``model.keras``. The command lines are their mirrors:
``keras-resnet-train`` (flags = :func:`train`'s keywords with dashes) and
``keras-resnet-eval``. The parts (:class:`Trainer`, :class:`Controller`, the configuration
classes :class:`TrainConfig` and its pieces) are public for those who assemble their own
loop. See ``docs/training.md``.

TensorFlow is imported when a run starts, not with this package.
"""

# The evaluate module is loaded before the evaluate function is bound: importing a submodule
# later would set the package's attribute of that name to the module.
import keras_resnet.training.evaluate  # noqa: F401, I001
from keras_resnet.training.api import evaluate, train
from keras_resnet.training.config import (
    DataConfig,
    ModelConfig,
    OptimConfig,
    OutputConfig,
    RunConfig,
    ScheduleConfig,
    TrainConfig,
    resolve_config,
)
from keras_resnet.training.controller import Controller
from keras_resnet.training.errors import UsageError
from keras_resnet.training.loop import TrainResult
from keras_resnet.training.trainer import Trainer

__all__ = ["Controller", "DataConfig", "ModelConfig", "OptimConfig", "OutputConfig",
           "RunConfig", "ScheduleConfig", "TrainConfig", "TrainResult", "Trainer", "UsageError",
           "evaluate", "resolve_config", "train"]
