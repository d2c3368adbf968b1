"""Classic command line `python src/freeze_graph.py ...`:
the tool is `facenet-freeze` (facenet_tf.freeze)."""
import sys

from facenet_tf.freeze import *  # noqa: F401,F403 (the classic script's public names)
from facenet_tf.freeze import console_main

if __name__ == '__main__':
    sys.exit(console_main())
