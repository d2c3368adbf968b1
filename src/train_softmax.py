"""Classic command line `python src/train_softmax.py ...`:
the tool is `facenet-train-softmax` (facenet_tf.train_softmax)."""
import sys

import facenet_tf.train_softmax as _tool
from facenet_tf.train_softmax import *  # noqa: F401,F403 (the classic script's public names)
from facenet_tf.train_softmax import console_main

__getattr__ = _tool.__getattr__  # the names that need TensorFlow, loaded on first use

if __name__ == '__main__':
    sys.exit(console_main())
