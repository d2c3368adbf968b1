"""Classic command line `python src/export_embeddings.py ...`:
the tool is `facenet-export-embeddings` (facenet_tf.export_embeddings)."""
import sys

from facenet_tf.export_embeddings import *  # noqa: F401,F403 (the classic script's public names)
from facenet_tf.export_embeddings import console_main

if __name__ == '__main__':
    sys.exit(console_main())
