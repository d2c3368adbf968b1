"""Sampled class centres for margin softmax over very many identities (the PartialFC idea,
`train_softmax.py --sample_rate R`).

Each step the margin softmax is computed over a subset of the class centres: every class of the
batch (its positives) plus randomly drawn other classes, ceil(R * nrof_classes) classes in all (or
the positives alone when there are more of them), drawn without replacement afresh each step. The
batch's labels are remapped to the positions of their classes in the subset. The centres are the
rows of `Logits/centres` [nrof_classes, D] and the subset is taken with tf.gather, so the gradient
is an IndexedSlices of the drawn rows: optimizers with a sparse update (ADAGRAD, ADADELTA, RMSPROP,
MOM) read and write only those rows of the centres and of their slots. The TF1 ADAM decays its two
moment slots of every row each step (its sparse update is not lazy), so it still touches the whole
matrix. Weight decay applies to the drawn rows, and the centres have no moving average (they are
not part of the embedding network), so the per-step work of the classifier layer shrinks with R while
every centre stays trainable. With R = 1 every class is drawn and the loss is the full margin
softmax's (to float rounding).
"""
import math
from typing import Any, NamedTuple

from facenet_tf.training import losses
from facenet_tf.tf_setup import configure
from facenet_tf.training.optimizers import NO_MOVING_AVERAGE
from facenet_tf.models import layers

tf = configure()  # TensorFlow set up for TF1 graphs (see facenet_tf.tf_setup)
tf1 = tf.compat.v1

def sample_size(nrof_classes, sample_rate):
    """The number of centres drawn per step (before positives that exceed it): ceil(R * C), at least 1."""
    return max(1, min(nrof_classes, int(math.ceil(sample_rate * nrof_classes - 1e-9))))


def sample_classes(labels, nrof_classes, sample_rate):
    """(index, local_labels): the drawn classes in increasing order (the batch's classes always,
    random others up to sample_size) and each label's position in index. Random scores in [0, 1)
    for every class, 2 for the positives, then the top scores."""
    labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
    positives, _ = tf.unique(labels)
    scores = tf.random.uniform([nrof_classes])
    scores = tf.tensor_scatter_nd_update(scores, positives[:, None], tf.fill(tf.shape(positives), 2.0))
    count = tf.maximum(sample_size(nrof_classes, sample_rate), tf.size(positives))
    _, index = tf.math.top_k(scores, count, sorted=False)
    index = tf.sort(index)
    position = tf.scatter_nd(index[:, None], tf.range(count), [nrof_classes])
    return index, tf.gather(position, labels)


class PartialLogits(NamedTuple):
    logits: Any         # margin logits [N, K] over the drawn centres
    scaled_cos: Any     # s * cos(theta) [N, K], for the accuracy
    labels: Any         # the labels remapped to 0..K-1
    decay: Any          # weight decay of the drawn rows (None without weight decay)
    index: Any          # the drawn classes [K], increasing


def partial_margin_logits(prelogits, labels, nrof_classes, sample_rate, s, m1, m2, m3, weight_decay=0.0):
    """Combined-margin logits over the sampled centres, as a PartialLogits."""
    with tf1.variable_scope('Logits'):
        centres = layers.model_variable('centres', [nrof_classes, int(prelogits.shape[-1])],
                                        layers.xavier_initializer())
    if all(v is not centres for v in tf1.get_collection(NO_MOVING_AVERAGE)):
        tf1.add_to_collection(NO_MOVING_AVERAGE, centres)
    index, local_labels = sample_classes(labels, nrof_classes, sample_rate)
    drawn = tf.gather(centres, index)
    x = tf.nn.l2_normalize(prelogits, 1, 1e-10)
    w = tf.nn.l2_normalize(drawn, 1, 1e-10)
    cos_theta = tf.matmul(x, w, transpose_b=True)
    logits, scaled_cos = losses.margin_from_cosines(cos_theta, local_labels, tf.size(index), s, m1, m2, m3)
    regularizer = layers.l2_regularizer(weight_decay)
    decay = regularizer(drawn) if regularizer is not None else None
    return PartialLogits(logits, scaled_cos, local_labels, decay, index)
