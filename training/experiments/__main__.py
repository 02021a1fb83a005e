"""``python -m keras_resnet.training.experiments`` runs ``keras-resnet-experiment``."""

import sys

from keras_resnet.training.experiments.cli import experiment_main

if __name__ == "__main__":
    sys.exit(experiment_main())
