"""Classic command line `python src/make_record.py ...`:
the tool is `facenet-make-record` (facenet_tf.make_record)."""
import sys

from facenet_tf.make_record import *  # noqa: F401,F403 (the classic script's public names)
from facenet_tf.make_record import console_main

if __name__ == '__main__':
    sys.exit(console_main())
