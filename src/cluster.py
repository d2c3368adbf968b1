"""Classic command line `python src/cluster.py ...`:
the tool is `facenet-cluster` (facenet_tf.cluster)."""
import sys

from facenet_tf.cluster import *  # noqa: F401,F403 (the classic script's public names)
from facenet_tf.cluster import console_main

if __name__ == '__main__':
    sys.exit(console_main())
