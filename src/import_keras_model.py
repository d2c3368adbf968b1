"""Classic command line `python src/import_keras_model.py ...`:
the tool is `facenet-import-model` (facenet_tf.import_model)."""
import sys

from facenet_tf.import_model import *  # noqa: F401,F403 (the classic script's public names)
from facenet_tf.import_model import console_main

if __name__ == '__main__':
    sys.exit(console_main())
