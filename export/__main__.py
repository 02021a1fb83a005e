"""``python -m keras_resnet.export ...`` is ``keras-resnet-export ...``."""

import sys

from .cli import export_main

sys.exit(export_main())
