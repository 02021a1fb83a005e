"""The one data layer of the trainer, the evaluator and the exporter.

A source name is one of ``digits``, ``synthetic``, ``folder:PATH``, ``tfds:NAME`` or a
tensorflow-datasets alias (``cifar10``, ``cifar100``, ``imagenet2012``, ``imagenette``);
:func:`check_dataset_name` is its one parser. Every source yields raw RGB pixels in 0..255
(the normalisation is part of the model) and has a ``train`` and a ``test`` split:

* ``digits``: scikit-learn's bundled digits, a ``RandomState(0)`` permutation of the 1797
  images; the first 1437 are ``train``, the last 360 ``test``.
* ``synthetic``: seeded random pixels; ``train`` is 256 images, ``test`` 64 further ones
  (labels are random: accuracy on it is meaningless).
* ``folder:PATH``: ``PATH/train/`` and ``PATH/val/`` when both exist; otherwise all image
  files sorted by class and path, with every 10th (positions 9, 19, ...) held out as ``test``
  (:mod:`.folders`). Image files are ``IMAGE_EXTENSIONS``.
* tensorflow-datasets: its ``train`` split, and ``test`` (or ``validation`` where it has no
  ``test``) for evaluation; nothing is downloaded without ``download=True``.

The trainer trains on ``train`` and evaluates on ``test`` (:mod:`.pipelines`); the exporter
calibrates int8 on a seeded sample of ``train`` and measures parity and top-1 on one of
``test`` (:func:`load_split`), so its evaluation images are never calibration or training
images.
"""

from keras_resnet.training.data.arrays import load_split
from keras_resnet.training.data.folders import (
           HOLD_OUT,
           IMAGE_EXTENSIONS,
           folder_splits,
           image_file_problem,
)
from keras_resnet.training.data.pipelines import (
           Augmentation,
           ImageStatistics,
           eval_dataset,
           eval_steps,
           eval_transform,
           image_statistics,
           pca_lighting_shift,
           train_dataset,
           train_transform,
)
from keras_resnet.training.data.sources import (
           SOURCE_NAMES,
           TFDS_ALIASES,
           Source,
           check_dataset_name,
           check_source,
           load_digits_arrays,
           open_source,
)
from keras_resnet.training.errors import UsageError

__all__ = ["HOLD_OUT", "IMAGE_EXTENSIONS", "SOURCE_NAMES", "TFDS_ALIASES", "Augmentation",
           "ImageStatistics", "Source", "UsageError", "check_dataset_name", "check_source",
           "eval_dataset", "eval_steps", "eval_transform", "folder_splits",
           "image_file_problem", "image_statistics", "load_digits_arrays", "load_split",
           "open_source", "pca_lighting_shift", "train_dataset", "train_transform"]
