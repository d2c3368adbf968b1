"""Classic-style command line `python src/calibrate_threshold.py ...`:
the tool is `facenet-calibrate` (facenet_tf.calibrate)."""
import sys

from facenet_tf.calibrate import *  # noqa: F401,F403 (the tool's public names)
from facenet_tf.calibrate import console_main

if __name__ == '__main__':
    sys.exit(console_main())
