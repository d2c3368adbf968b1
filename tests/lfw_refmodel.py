"""A published-format InceptionResnetV1 (bottleneck 512) with every variable set to the reference
recipe `ref_value(name, shape, 1)`, written as a frozen `.pb` or a checkpoint folder.

Used by the LFW tests and benchmarks/bench_validate.py: its embeddings of the reference crops are
known (../shared/reference/embeddings/seed1_*.npy).
"""
import importlib.util
import os

import numpy as np
import tensorflow as tf

from facenet_tf import model_freeze, model_io
from facenet_tf.models import inception_resnet_v1

tf1 = tf.compat.v1


def load_ref_value(reference_dir):
    """The `ref_value` function of ../shared/reference/refweights.py (imported from there, not copied)."""
    spec = importlib.util.spec_from_file_location('refweights', os.path.join(reference_dir, 'refweights.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ref_value


def _build(reference_dir, sess, seed):
    images = tf1.placeholder(tf.float32, [None, 160, 160, 3], name='input')
    phase_train = tf1.placeholder(tf.bool, name='phase_train')
    prelogits, _ = inception_resnet_v1.inference(images, 1.0, phase_train=phase_train,
                                                 bottleneck_layer_size=512)
    tf.nn.l2_normalize(prelogits, 1, 1e-10, name='embeddings')
    ref_value = load_ref_value(reference_dir)
    feed, assigns = {}, []
    for v in tf1.global_variables():
        value = ref_value(v.op.name, v.shape.as_list(), seed, v.dtype.base_dtype.name)
        ph = tf1.placeholder(v.dtype.base_dtype, value.shape)
        assigns.append(tf1.assign(v, ph))
        feed[ph] = value
    sess.run(assigns, feed)


def write_frozen(reference_dir, path, seed=1):
    """Freeze the reference-weights network to `path` (phase_train fixed to False)."""
    with tf1.Graph().as_default():
        with tf1.Session() as sess:
            _build(reference_dir, sess, seed)
            frozen = model_freeze.freeze_session(sess)
    with open(path, 'wb') as f:
        f.write(frozen.SerializeToString())
    return path


def write_checkpoint(reference_dir, model_dir, seed=1):
    """Save the reference-weights network in the classic checkpoint folder layout."""
    os.makedirs(model_dir, exist_ok=True)
    with tf1.Graph().as_default():
        with tf1.Session() as sess:
            _build(reference_dir, sess, seed)
            saver = tf1.train.Saver(tf1.trainable_variables())
            model_io.save_variables_and_metagraph(sess, saver, None, model_dir, '20260101-000000', 1)
    return model_dir


def reference_embeddings(reference_dir, name):
    return np.load(os.path.join(reference_dir, 'embeddings', 'seed1_%s.npy' % name))
