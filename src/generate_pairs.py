"""Classic command line `python src/generate_pairs.py ...`:
the tool is `facenet-generate-pairs` (facenet_tf.generate_pairs)."""
import sys

from facenet_tf.generate_pairs import *  # noqa: F401,F403 (the classic script's public names)
from facenet_tf.generate_pairs import console_main

if __name__ == '__main__':
    sys.exit(console_main())
