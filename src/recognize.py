"""Classic command line `python src/recognize.py ...`:
the tool is `facenet-recognize` (facenet_tf.recognize)."""
import sys

from facenet_tf.recognize import *  # noqa: F401,F403 (the classic script's public names)
from facenet_tf.recognize import console_main

if __name__ == '__main__':
    sys.exit(console_main())
