"""Classic command line `python src/export_tflite.py ...`:
the tool is `facenet-export-tflite` (facenet_tf.export_tflite)."""
import sys

from facenet_tf.export_tflite import *  # noqa: F401,F403 (the classic script's public names)
from facenet_tf.export_tflite import console_main

if __name__ == '__main__':
    sys.exit(console_main())
