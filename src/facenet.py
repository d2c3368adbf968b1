"""Public helpers under their classic names (`import facenet`), delegating to facenet_tf modules."""
from facenet_tf.dataset import (ImageClass, get_dataset, get_image_paths,  # noqa: F401
                                get_image_paths_and_labels, split_dataset)
from facenet_tf.evaluation import (calculate_accuracy, calculate_roc, calculate_val,  # noqa: F401
                                   calculate_val_far, distance)
from facenet_tf.images import crop, flip, load_data, prewhiten, to_rgb  # noqa: F401
from facenet_tf.training.input_pipeline import (FIXED_STANDARDIZATION, FLIP, RANDOM_CROP, RANDOM_FLIP,  # noqa: F401
                                       RANDOM_ROTATE, create_input_pipeline, get_control_flag)
from facenet_tf.training.losses import center_loss  # noqa: F401
from facenet_tf.model_io import (get_model_filenames, load_model,  # noqa: F401
                                 save_variables_and_metagraph)
from facenet_tf.run_info import store_revision_info, write_arguments_to_file  # noqa: F401
from facenet_tf.training import get_learning_rate_from_file  # noqa: F401
from facenet_tf.training.triplets import triplet_loss  # noqa: F401
