"""Classic command line `python src/compare.py ...`:
the tool is `facenet-compare` (facenet_tf.compare)."""
import sys

from facenet_tf.compare import *  # noqa: F401,F403 (the classic script's public names)
from facenet_tf.compare import console_main

if __name__ == '__main__':
    sys.exit(console_main())
