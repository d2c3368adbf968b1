"""Classic command line `python src/align/align_dataset_mtcnn.py ...`: the tool is `facenet-align`
(facenet_tf.align.align_dataset_mtcnn; also `python -m facenet_tf.align`)."""
import os
import sys

# Run as `python src/align/align_dataset_mtcnn.py`, Python puts src/align/ on the path, not src/.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from facenet_tf.align.align_dataset_mtcnn import *  # noqa: E402,F401,F403 (the classic script's public names)
from facenet_tf.align.align_dataset_mtcnn import console_main  # noqa: E402

if __name__ == '__main__':
    sys.exit(console_main())
