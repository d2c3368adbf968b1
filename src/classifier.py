"""Classic command line `python src/classifier.py ...`:
the tool is `facenet-classifier` (facenet_tf.classifier)."""
import sys

from facenet_tf.classifier import *  # noqa: F401,F403 (the classic script's public names)
from facenet_tf.classifier import console_main

if __name__ == '__main__':
    sys.exit(console_main())
