"""Classic command line `python src/train_tripletloss.py ...`:
the tool is `facenet-train-triplet` (facenet_tf.train_triplet)."""
import sys

import facenet_tf.train_triplet as _tool
from facenet_tf.train_triplet import *  # noqa: F401,F403 (the classic script's public names)
from facenet_tf.train_triplet import console_main

__getattr__ = _tool.__getattr__  # the names that need TensorFlow, loaded on first use

if __name__ == '__main__':
    sys.exit(console_main())
