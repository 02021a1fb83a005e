"""Pretrained weights: the one table of known weights, the one resolver from what a user
passes to a typed record, and one loader per file kind.

* :mod:`.table`: every known weight set (source, architecture, layout, normalisation,
  digest, published top-1): :func:`list_weights`, :func:`weights_info`;
* :mod:`.resolver`: ``"imagenet"``, ``"timm/NAME"``, a file or a training run's model dir
  to a :class:`WeightsRecord` (:func:`resolve`, cheap), its file and digest (:func:`fetch`);
* loaders: :mod:`.keras_files` (keras.applications' files, ``.h5``, ``.weights.h5``,
  ``.keras``), :mod:`.timm` (safetensors checkpoints, downloaded by :mod:`.hub`);
* :mod:`.normalisation`: the input normalisation the weights expect;
  :mod:`.values`: the finite-values check every loaded model passes.

The zoo's builders, the trainer's ``--weights`` and the exporter's ``--weights`` all go
through :func:`resolve` and :func:`fetch`.
"""

from keras_resnet.weights.resolver import KINDS, WeightsRecord, fetch, flag_message, resolve
from keras_resnet.weights.table import KNOWN_WEIGHTS, WeightsInfo, list_weights, weights_info
from keras_resnet.weights.values import InvalidWeights, check_values

__all__ = ["KINDS", "KNOWN_WEIGHTS", "InvalidWeights", "WeightsInfo", "WeightsRecord",
           "check_values", "fetch", "flag_message", "list_weights", "resolve", "weights_info"]
