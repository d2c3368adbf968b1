"""`python -m facenet_tf.align`: the `facenet-align` command (facenet_tf.align.align_dataset_mtcnn)."""
import sys

from facenet_tf.align.align_dataset_mtcnn import console_main

sys.exit(console_main())
