"""InceptionResnetV1 against the classic network: variables, reference embeddings, bf16, training."""
import hashlib
import importlib.util
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from facenet_tf.images import read_rgb
from facenet_tf.tf_setup import session_config
from facenet_tf.models import inception_resnet_v1

tf1 = tf.compat.v1

EMBEDDING_MODES = ('numpy_prewhiten', 'pipe_standardization', 'pipe_fixed',
                   'pipe_standardization_flip', 'pipe_fixed_flip')


def load_ref_value(reference_dir):
    """ref_value of ../shared/reference/refweights.py, imported from there."""
    spec = importlib.util.spec_from_file_location('refweights', os.path.join(reference_dir, 'refweights.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ref_value


def classic_variables(test_data_dir):
    """(variables as (name, shape, trainable, in TRAINABLE_VARIABLES, dtype), facts) of the classic
    network: tests/data copy of ../shared/reference/inception_resnet_v1_512_{variables.tsv,stats.json}."""
    with open(os.path.join(test_data_dir, 'inception_resnet_v1_512_variables.json')) as f:
        doc = json.load(f)
    rows = [(name, tuple(shape), trainable, in_collection, dtype)
            for name, shape, trainable, in_collection, _saved, dtype in doc['variables']]
    return rows, doc


def test_variables_equal_the_classic_network(test_data_dir):
    expected, stats = classic_variables(test_data_dir)
    assert len(expected) == 490
    with tf.Graph().as_default():
        images = tf1.placeholder(tf.float32, [None, 160, 160, 3])
        phase_train = tf1.placeholder(tf.bool)
        prelogits, end_points = inception_resnet_v1.inference(
            images, 0.8, phase_train=phase_train, bottleneck_layer_size=512, weight_decay=5e-4)
        in_collection = set(id(v) for v in tf1.trainable_variables())
        actual = [(v.op.name, tuple(v.shape.as_list()), v.trainable, id(v) in in_collection,
                   v.dtype.base_dtype.name) for v in tf1.global_variables()]
        assert actual == expected
        assert sum(int(np.prod(s)) for _, s, _, _, _ in actual) == stats['params_total'] == 23497424
        losses = tf1.get_collection(tf1.GraphKeys.REGULARIZATION_LOSSES)
        assert len(losses) == stats['n_regularization_losses'] == 133
        assert prelogits.shape.as_list() == [None, 512]
        shapes = stats['activation_shapes']
        assert end_points['Conv2d_4b_3x3'].shape.as_list()[1:] == shapes['InceptionResnetV1/Conv2d_4b_3x3/Relu'][1:]
        assert end_points['Mixed_6a'].shape.as_list()[1:] == shapes['InceptionResnetV1/Mixed_6a/concat'][1:]
        assert end_points['Mixed_7a'].shape.as_list()[1:] == shapes['InceptionResnetV1/Mixed_7a/concat'][1:]
        assert end_points['Mixed_8b'].shape.as_list()[1:] == shapes['InceptionResnetV1/Block8/add'][1:]
        assert end_points['PreLogitsFlatten'].shape.as_list()[1:] == [1792]
        for key in ('Conv2d_1a_3x3', 'Conv2d_2a_3x3', 'Conv2d_2b_3x3', 'MaxPool_3a_3x3', 'Conv2d_3b_1x1',
                    'Conv2d_4a_3x3', 'Mixed_5a', 'Mixed_6b', 'Mixed_8a', 'PrePool'):
            assert key in end_points


class ReferenceNet(object):
    """The 512-D network in inference mode with every variable set to ref_value(name, shape, 1)."""

    def __init__(self, reference_dir):
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.images = tf1.placeholder(tf.float32, [None, 160, 160, 3], name='input')
            prelogits, _ = inception_resnet_v1.inference(self.images, 1.0, phase_train=False,
                                                         bottleneck_layer_size=512)
            self.embeddings = tf.nn.l2_normalize(prelogits, 1, 1e-10)
            self.raw = tf1.placeholder(tf.uint8, [None, 160, 160, 3])
            self.standardized = tf.map_fn(tf.image.per_image_standardization, self.raw,
                                          fn_output_signature=tf.float32)
            self.fixed = (tf.cast(self.raw, tf.float32) - 127.5) / 128.0
            ref_value = load_ref_value(reference_dir)
            self.values = {v.op.name: ref_value(v.op.name, v.shape.as_list(), 1)
                           for v in tf1.global_variables()}
            self.feed = {v.initial_value: self.values[v.op.name] for v in tf1.global_variables()}
            self.initializers = [v.initializer for v in tf1.global_variables()]

    def session(self, precision='fp32'):
        sess = tf1.Session(graph=self.graph, config=session_config(precision))
        sess.run(self.initializers, self.feed)
        return sess

    def embed(self, sess, images, **run_kwargs):
        return sess.run(self.embeddings, {self.images: images}, **run_kwargs)


@pytest.fixture(scope='module')
def reference_net(reference_dir):
    return ReferenceNet(reference_dir)


@pytest.fixture(scope='module')
def fp32_session(reference_net):
    sess = reference_net.session('fp32')
    yield sess
    sess.close()


@pytest.fixture(scope='module')
def crops(reference_dir):
    folder = os.path.join(reference_dir, 'embeddings')
    with open(os.path.join(folder, 'seed1_files.txt')) as f:
        files = [line.strip() for line in f if line.strip()]
    return np.stack([read_rgb(os.path.join(folder, 'crops', name)) for name in files])


def test_reference_weights_follow_the_recipe(reference_dir, reference_net):
    """Our use of the recipe (names, shapes, dtype) gives the checksummed values."""
    with open(os.path.join(reference_dir, 'embeddings', 'ref_weights_checksums.json')) as f:
        expected = json.load(f)['seeds']['1']
    digest = hashlib.sha256()
    for name in sorted(reference_net.values):
        digest.update(reference_net.values[name].astype('<f4').tobytes())
    assert len(reference_net.values) == expected['n_vars']
    assert digest.hexdigest() == expected['sha256_all_vars']
    for name, spot in expected['spot'].items():
        np.testing.assert_allclose(reference_net.values[name].astype(np.float64).sum(), spot['sum'], rtol=1e-6)


@pytest.mark.parametrize('mode', EMBEDDING_MODES)
def test_reference_embeddings(reference_dir, reference_net, fp32_session, crops, mode):
    """Embeddings of the reference crops equal the classic network's within 1e-5 in every input mode."""
    folder = os.path.join(reference_dir, 'embeddings')
    expected = np.load(os.path.join(folder, 'seed1_%s.npy' % mode))
    if mode == 'numpy_prewhiten':
        inputs = np.load(os.path.join(folder, 'seed1.npz'))['input_numpy_prewhiten']
    else:
        standardize = reference_net.fixed if 'fixed' in mode else reference_net.standardized
        inputs = fp32_session.run(standardize, {reference_net.raw: crops})
    actual = reference_net.embed(fp32_session, inputs)
    if mode.endswith('_flip'):
        actual = np.hstack([actual, reference_net.embed(fp32_session, inputs[:, :, ::-1, :])])
    assert actual.shape == expected.shape
    assert np.abs(actual - expected).max() < 1e-5


def _ran_bfloat16(run_metadata):
    bf16 = tf.bfloat16.as_datatype_enum
    return any(node.attr['T'].type == bf16 and 'Conv2D' in node.op
               for graph in run_metadata.partition_graphs for node in graph.node)


def test_bf16_embeddings_close_to_fp32(reference_dir, reference_net, fp32_session):
    """The bf16 rewrite runs the convolutions in bfloat16 and keeps embeddings within cosine 0.999."""
    inputs = np.load(os.path.join(reference_dir, 'embeddings', 'seed1.npz'))['input_numpy_prewhiten']
    fp32 = reference_net.embed(fp32_session, inputs)
    with reference_net.session('bf16') as sess:
        metadata = tf1.RunMetadata()
        bf16 = reference_net.embed(sess, inputs, options=tf1.RunOptions(output_partition_graphs=True),
                                   run_metadata=metadata)
    if not _ran_bfloat16(metadata):
        pytest.skip('the bfloat16 rewrite did not apply here (oneDNN off: TF_ENABLE_ONEDNN_OPTS=1 turns it on)')
    cosine = np.sum(fp32 * bf16, axis=1) / np.linalg.norm(bf16, axis=1)
    assert cosine.min() > 0.999
    assert np.abs(fp32 - bf16).max() > 0  # really computed in another precision


def test_training_mode_updates_moving_statistics():
    """A training forward pass moves the batch norm statistics by (1 - 0.995) towards the batch
    moments; inference leaves them alone and is deterministic; weights carry L2 losses."""
    rng = np.random.RandomState(3)
    batch = rng.standard_normal((4, 96, 96, 3)).astype(np.float32)
    with tf.Graph().as_default():
        images = tf1.placeholder(tf.float32, [None, 96, 96, 3])
        phase_train = tf1.placeholder(tf.bool)
        prelogits, end_points = inception_resnet_v1.inference(images, 0.8, phase_train=phase_train,
                                                              bottleneck_layer_size=16, weight_decay=1e-3)
        scope = 'InceptionResnetV1/Conv2d_1a_3x3/'
        mean, variance = [tf1.global_variables(scope + 'BatchNorm/moving_' + n)[0] for n in ('mean', 'variance')]
        weights = tf1.global_variables(scope + 'weights')[0]
        conv = tf.nn.conv2d(images, weights, [1, 2, 2, 1], 'VALID')
        batch_mean, batch_var = tf.nn.moments(conv, [0, 1, 2])
        losses = {loss.name.split('/Regularizer/')[0]: loss
                  for loss in tf1.get_collection(tf1.GraphKeys.REGULARIZATION_LOSSES)}
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            before = sess.run([mean, variance])
            m, v = sess.run([batch_mean, batch_var], {images: batch})
            n = batch.shape[0] * int(conv.shape[1]) * int(conv.shape[2])
            sess.run(prelogits, {images: batch, phase_train: True})
            after = sess.run([mean, variance])
            np.testing.assert_allclose(after[0], before[0] * 0.995 + 0.005 * m, rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(after[1], before[1] * 0.995 + 0.005 * v * n / (n - 1), rtol=1e-4)
            first = sess.run(prelogits, {images: batch, phase_train: False})
            second = sess.run(prelogits, {images: batch, phase_train: False})
            np.testing.assert_array_equal(first, second)
            np.testing.assert_array_equal(sess.run(mean), after[0])
            assert len(losses) == 133 and scope + 'weights' in losses
            w = sess.run(weights)
            np.testing.assert_allclose(sess.run(losses[scope + 'weights']), 1e-3 * np.sum(w ** 2) / 2, rtol=1e-5)
            assert not any('biases' in name or 'BatchNorm' in name for name in losses)
