"""Classification losses for training face embeddings: the classic softmax `Logits` layer, center
loss and prelogits norm loss, and the combined angular margin of the insightface family
(ArcFace, CosFace and their combination).

Combined margin. With x the L2-normalised embedding and w_j the L2-normalised weight vector of
class j, cos(theta_j) = x . w_j. The logit of the true class y is s * f(theta_y) with
f(theta) = cos(m1 * theta + m2) - m3, the others are s * cos(theta_j). ArcFace is (m1, m2, m3) =
(1, 0.5, 0), CosFace (1, 0, 0.35) and the insightface combination (1, 0.3, 0.2).

f decreases with theta only while m1 * theta + m2 <= pi, i.e. up to theta_max = (pi - m2) / m1.
Past theta_max the target logit continues as the plain cosine shifted to meet f there:
f(theta) = cos(theta) - (cos(theta_max) - f(theta_max)). This extension is continuous and monotone
(a sample pushed further from its class always gets a lower target logit), and keeps a penalty of
at least m3 below the plain cosine, unlike the usual fallback cos(theta) - m * sin(m), which jumps
at theta_max. theta = acos(cos) is taken of the cosine clipped to [-1 + 1e-6, 1 - 1e-6], so the
gradient stays finite where an embedding coincides with (or opposes) its class vector.
"""
import math

from facenet_tf.tf_setup import configure
from facenet_tf.models import layers
from facenet_tf.training.config import LOSSES, MARGIN_DEFAULTS, margin_parameters  # noqa: F401 (the flags' meaning)

tf = configure()  # TensorFlow set up for TF1 graphs (see facenet_tf.tf_setup)
tf1 = tf.compat.v1

COS_CLIP = 1e-6


def softmax_logits(prelogits, nrof_classes, weight_decay=0.0):
    """The classic classifier: fully connected `Logits` layer (weights, biases, no activation),
    Glorot-initialised, with L2 weight decay on its weights."""
    return layers.fully_connected(prelogits, nrof_classes, activation_fn=None,
                                  weights_initializer=layers.xavier_initializer(),
                                  weights_regularizer=layers.l2_regularizer(weight_decay), scope='Logits')


def target_margin(cos_theta, m1, m2, m3):
    """f(theta) of the module docstring for the true-class cosines (any shape)."""
    cos_c = tf.clip_by_value(cos_theta, -1.0 + COS_CLIP, 1.0 - COS_CLIP)
    theta = tf.acos(cos_c)
    theta_max = (math.pi - m2) / m1
    if theta_max >= math.pi:
        return tf.cos(m1 * theta + m2) - m3
    shift = math.cos(theta_max) - (math.cos(m1 * theta_max + m2) - m3)
    return tf.where(theta <= theta_max, tf.cos(m1 * theta + m2) - m3, cos_theta - shift)


def margin_logits(prelogits, labels, nrof_classes, s, m1, m2, m3, weight_decay=0.0):
    """Combined-margin logits. Returns (margin logits for the loss, s * cos(theta) for accuracy).
    The class vectors are the columns of `Logits/weights` [D, nrof_classes] (no biases)."""
    with tf1.variable_scope('Logits'):
        weights = layers.model_variable('weights', [int(prelogits.shape[-1]), nrof_classes],
                                        layers.xavier_initializer(),
                                        regularizer=layers.l2_regularizer(weight_decay))
    x = tf.nn.l2_normalize(prelogits, 1, 1e-10)
    w = tf.nn.l2_normalize(weights, 0, 1e-10)
    return margin_from_cosines(tf.matmul(x, w), labels, nrof_classes, s, m1, m2, m3)


def margin_from_cosines(cos_theta, labels, nrof_classes, s, m1, m2, m3):
    """(margin logits, s * cos(theta)) from the cosines [N, nrof_classes] of embeddings and class
    vectors: the true class's cosine replaced by f(theta), everything scaled by s."""
    one_hot = tf.one_hot(labels, nrof_classes, dtype=cos_theta.dtype)
    cos_target = tf.reduce_sum(cos_theta * one_hot, axis=1)
    delta = target_margin(cos_target, m1, m2, m3) - cos_target
    logits = s * (cos_theta + one_hot * delta[:, None])
    return tf.identity(logits, 'margin_logits'), s * cos_theta


def cross_entropy(logits, labels):
    """Mean softmax cross-entropy, also added to the 'losses' collection (classic summaries)."""
    per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits,
                                                                 name='cross_entropy_per_example')
    mean = tf.reduce_mean(per_example, name='cross_entropy')
    tf1.add_to_collection('losses', mean)
    return mean


def accuracy(logits, labels):
    """Fraction of the batch whose largest logit is its label."""
    correct = tf.equal(tf.argmax(logits, 1), tf.cast(labels, tf.int64))
    return tf.reduce_mean(tf.cast(correct, tf.float32), name='accuracy')


def center_loss(features, labels, alfa, nrof_classes):
    """Classic center loss: mean over the batch and features of (feature - its class center)^2.

    The centers (non-trainable variable `centers`, zeros at start) move towards the batch's
    features, center -= (1 - alfa) * (center - feature) for each sample; that update is put in
    the UPDATE_OPS collection, so it runs with the training step only (evaluating the loss, e.g.
    on a validation set, leaves the centers alone). Returns (loss, centers) as the classic
    facenet.center_loss did."""
    nrof_features = int(features.shape[1])
    centers = tf1.get_variable('centers', [nrof_classes, nrof_features], dtype=tf.float32,
                               initializer=tf1.constant_initializer(0), trainable=False)
    labels = tf.reshape(labels, [-1])
    centers_batch = tf.gather(centers, labels)
    diff = (1 - alfa) * (centers_batch - features)
    update = tf1.scatter_sub(centers, labels, diff)
    tf1.add_to_collection(tf1.GraphKeys.UPDATE_OPS, update)
    loss = tf.reduce_mean(tf.square(features - centers_batch), name='center_loss')
    return loss, centers


def prelogits_norm(prelogits, p, eps=1e-4):
    """Classic prelogits norm: batch mean of the p-norm of |prelogits| + eps."""
    return tf.reduce_mean(tf.norm(tf.abs(prelogits) + eps, ord=p, axis=1), name='prelogits_norm')
