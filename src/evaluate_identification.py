"""Classic command line `python src/evaluate_identification.py ...`:
the tool is `facenet-evaluate-identification` (facenet_tf.evaluate_identification)."""
import sys

from facenet_tf.evaluate_identification import *  # noqa: F401,F403 (the tool's public names)
from facenet_tf.evaluate_identification import console_main

if __name__ == '__main__':
    sys.exit(console_main())
