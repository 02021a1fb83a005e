"""The keras-resnet trainer: one ``tf.distribute`` custom loop for every strategy.

Entry points: ``keras-resnet-train`` / ``python -m keras_resnet.training`` (:func:`keras_resnet.training.cli.train_main`)
and ``keras-resnet-eval`` (:func:`keras_resnet.training.cli.eval_main`). See ``docs/training.md``.
"""

from keras_resnet.training.errors import UsageError

__all__ = ["UsageError"]
