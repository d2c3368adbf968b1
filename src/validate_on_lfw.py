"""Classic command line `python src/validate_on_lfw.py ...`:
the tool is `facenet-validate` (facenet_tf.validate)."""
import sys

from facenet_tf.validate import *  # noqa: F401,F403 (the classic script's public names)
from facenet_tf.validate import console_main

if __name__ == '__main__':
    sys.exit(console_main())
