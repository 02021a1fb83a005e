"""``python -m keras_resnet.training`` runs the trainer (same as ``keras-resnet-train``)."""

import sys

from keras_resnet.training.cli import train_main

if __name__ == "__main__":
    sys.exit(train_main())
