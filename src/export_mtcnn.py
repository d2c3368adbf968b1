"""Classic-style command line `python src/export_mtcnn.py ...`:
the tool is `facenet-export-mtcnn` (facenet_tf.export_mtcnn)."""
import sys

from facenet_tf.export_mtcnn import *  # noqa: F401,F403 (the script's public names)
from facenet_tf.export_mtcnn import console_main

if __name__ == '__main__':
    sys.exit(console_main())
