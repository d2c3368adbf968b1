"""Public helpers under their classic names (`import facenet`), delegating to facenet_tf modules."""
from facenet_tf.dataset import (ImageClass, get_dataset, get_image_paths,  # noqa: F401
                                get_image_paths_and_labels, split_dataset)
from facenet_tf.images import crop, flip, load_data, prewhiten, to_rgb  # noqa: F401
