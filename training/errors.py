"""The one exception type the command line turns into ``error: ...`` and exit code 2
(shared by every console script: :class:`keras_resnet.console.UsageError`)."""

from keras_resnet.console import UsageError

__all__ = ["UsageError"]
