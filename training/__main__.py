"""``python -m training`` runs the trainer (same as ``keras-resnet-train``)."""

import sys

from training.cli import train_main

if __name__ == "__main__":
    sys.exit(train_main())
