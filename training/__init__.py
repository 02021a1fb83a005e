"""The keras-resnet trainer: one ``tf.distribute`` custom loop for every strategy.

Entry points: ``keras-resnet-train`` / ``python -m training`` (:func:`training.cli.train_main`)
and ``keras-resnet-eval`` (:func:`training.cli.eval_main`). See ``docs/training.md``.
"""

from training.errors import UsageError

__all__ = ["UsageError"]
