"""``python -m keras_resnet.export ...`` is ``keras-resnet-export ...``."""

import sys

from keras_resnet.export.cli import export_main

sys.exit(export_main())
