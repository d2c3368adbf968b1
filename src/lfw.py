"""LFW protocol under the classic module name (`import lfw`): reading pairs files, finding the pair
images, and evaluating embeddings. The pairs files are handled by facenet_tf.pairs and the metrics by
facenet_tf.evaluation; this module re-exports them with the classic `evaluate`.
"""
from facenet_tf import evaluation
from facenet_tf.evaluation import calculate_roc, calculate_val, calculate_val_far, distance  # noqa: F401
from facenet_tf.pairs import (PROTOCOL_HINT, add_extension, get_paths, get_paths_and_skipped,  # noqa: F401
                              image_files, lfw_number, pair_folds, read_pairs, read_pairs_header)


def evaluate(embeddings, actual_issame, nrof_folds=10, distance_metric=0, subtract_mean=False, folds=None):
    """(tpr, fpr, accuracy, val, val_std, far) of pairs (rows 2i, 2i+1); see evaluation.evaluate."""
    return evaluation.evaluate(embeddings, actual_issame, nrof_folds=nrof_folds,
                               distance_metric=distance_metric, subtract_mean=subtract_mean, folds=folds)
