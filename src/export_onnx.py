"""Classic command line `python src/export_onnx.py ...`:
the tool is `facenet-export-onnx` (facenet_tf.export_onnx)."""
import sys

from facenet_tf.export_onnx import *  # noqa: F401,F403 (the script's public names)
from facenet_tf.export_onnx import console_main

if __name__ == '__main__':
    sys.exit(console_main())
