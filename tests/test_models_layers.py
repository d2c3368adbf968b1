"""Layer library, InceptionResnetV2, small_cnn and the precision helper."""
import numpy as np
import pytest
import tensorflow as tf

from facenet_tf.errors import FaceNetError
from facenet_tf.precision import PRECISIONS, add_precision_argument
from facenet_tf.tf_setup import session_config
from facenet_tf.models import inception_resnet_v1, inception_resnet_v2, layers, small_cnn, small_cnn_flat

tf1 = tf.compat.v1


def _count(variables):
    return sum(int(np.prod(v.shape.as_list())) for v in variables)


def test_arg_scope_defaults_nest_and_explicit_arguments_win():
    with tf.Graph().as_default():
        x = tf1.placeholder(tf.float32, [2, 8, 8, 3])
        with layers.arg_scope([layers.conv2d], padding='VALID', activation_fn=None):
            with layers.arg_scope([layers.conv2d], stride=2):
                a = layers.conv2d(x, 4, 3, scope='a')
            b = layers.conv2d(x, 4, 3, scope='b')
            c = layers.conv2d(x, 4, 3, padding='SAME', scope='c')
        d = layers.conv2d(x, 4, 3, scope='d')
        assert a.shape.as_list() == [2, 3, 3, 4]
        assert b.shape.as_list() == [2, 6, 6, 4] and b.op.type == 'BiasAdd'
        assert c.shape.as_list() == [2, 8, 8, 4]
        assert d.shape.as_list() == [2, 8, 8, 4] and d.op.type == 'Relu'
        assert [v.op.name for v in tf1.global_variables('a')] == ['a/weights', 'a/biases']
        with pytest.raises(ValueError):
            with layers.arg_scope([tf.nn.relu], name='x'):
                pass


def test_batch_norm_with_update_ops_collection():
    """With a collection, training adds two update ops there; running them moves the statistics."""
    data = np.random.RandomState(0).standard_normal((16, 5)).astype(np.float32) * 3 + 2
    with tf.Graph().as_default():
        x = tf1.placeholder(tf.float32, [None, 5])
        y = layers.batch_norm(x, decay=0.9, is_training=True, scope='bn')
        updates = tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)
        assert len(updates) == 2
        mean = tf1.global_variables('bn/moving_mean')[0]
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            out = sess.run(y, {x: data})
            np.testing.assert_allclose(out.mean(0), 0, atol=1e-5)
            np.testing.assert_allclose(out.std(0), 1, rtol=1e-2)
            np.testing.assert_array_equal(sess.run(mean), np.zeros(5, np.float32))
            sess.run(updates, {x: data})
            np.testing.assert_allclose(sess.run(mean), 0.1 * data.mean(0), rtol=1e-5)


@pytest.mark.parametrize('network', [small_cnn, small_cnn_flat, inception_resnet_v1])
def test_reuse_creates_no_new_variables_and_shares_outputs(network):
    with tf.Graph().as_default():
        x = tf1.placeholder(tf.float32, [None, 96, 96, 3])
        a, _ = network.inference(x, 1.0, phase_train=False, bottleneck_layer_size=32, weight_decay=1e-4)
        n_vars = len(tf1.global_variables())
        n_losses = len(tf1.get_collection(tf1.GraphKeys.REGULARIZATION_LOSSES))
        b, _ = network.inference(x, 1.0, phase_train=False, bottleneck_layer_size=32, weight_decay=1e-4,
                                 reuse=True)
        assert len(tf1.global_variables()) == n_vars
        assert len(tf1.get_collection(tf1.GraphKeys.REGULARIZATION_LOSSES)) == n_losses
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            data = np.random.RandomState(1).standard_normal((2, 96, 96, 3)).astype(np.float32)
            out_a, out_b = sess.run([a, b], {x: data})
            np.testing.assert_array_equal(out_a, out_b)


@pytest.mark.parametrize('size,grid', [(96, 3), (112, 4), (160, 5)])
def test_small_cnn_sizes_and_parameters(size, grid):
    with tf.Graph().as_default():
        x = tf1.placeholder(tf.float32, [None, size, size, 3])
        prelogits, end_points = small_cnn.inference(x, 0.8, phase_train=tf1.placeholder(tf.bool),
                                                    bottleneck_layer_size=128)
        assert prelogits.shape.as_list() == [None, 128]
        assert end_points['PrePool'].shape.as_list() == [None, grid, grid, small_cnn.HEAD_CHANNELS]
        learnable = [v for v in tf1.global_variables() if v.trainable]
        assert 1.5e6 < _count(learnable) < 3e6
        names = [v.op.name for v in tf1.global_variables()]
        assert 'SmallCNN/Bottleneck/weights' in names and 'SmallCNN/Bottleneck/BatchNorm/moving_variance' in names


@pytest.mark.parametrize('size,grid', [(96, 3), (112, 4)])
def test_small_cnn_flat_keeps_the_positions(size, grid):
    shapes = {}
    for network in (small_cnn, small_cnn_flat):
        with tf.Graph().as_default():
            x = tf1.placeholder(tf.float32, [None, size, size, 3])
            prelogits, _ = network.inference(x, 0.8, phase_train=False, bottleneck_layer_size=128)
            assert prelogits.shape.as_list() == [None, 128]
            shapes[network] = {v.op.name: v.shape.as_list() for v in tf1.global_variables()}
    flat_weights = shapes[small_cnn_flat].pop('SmallCNN/Bottleneck/weights')
    assert flat_weights == [grid * grid * small_cnn.HEAD_CHANNELS, 128]
    assert shapes[small_cnn].pop('SmallCNN/Bottleneck/weights') == [small_cnn.HEAD_CHANNELS, 128]
    assert shapes[small_cnn_flat] == shapes[small_cnn]       # same body, same names


def test_small_cnn_learns_a_fixed_batch():
    """A few Adagrad steps of a triplet loss on a fixed batch lower the loss (the network trains)."""
    rng = np.random.RandomState(0)
    data = rng.standard_normal((30, 96, 96, 3)).astype(np.float32)
    with tf.Graph().as_default():
        tf1.set_random_seed(0)
        x = tf1.placeholder(tf.float32, [None, 96, 96, 3])
        prelogits, _ = small_cnn.inference(x, 1.0, phase_train=True, bottleneck_layer_size=32,
                                           weight_decay=1e-4)
        emb = tf.nn.l2_normalize(prelogits, 1, 1e-10)
        anchor, positive, negative = tf.split(emb, 3)
        loss = tf.reduce_mean(tf.maximum(tf.reduce_sum(tf.square(anchor - positive), 1)
                                         - tf.reduce_sum(tf.square(anchor - negative), 1) + 0.2, 0.0))
        total = loss + tf.add_n(tf1.get_collection(tf1.GraphKeys.REGULARIZATION_LOSSES))
        step = tf1.train.AdagradOptimizer(0.1).minimize(total)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            losses = [sess.run([loss, step], {x: data})[0] for _ in range(8)]
    assert losses[-1] < 0.5 * losses[0]


def test_inception_resnet_v2_structure():
    with tf.Graph().as_default():
        x = tf1.placeholder(tf.float32, [None, 160, 160, 3])
        prelogits, end_points = inception_resnet_v2.inference(x, 0.8, phase_train=False,
                                                              bottleneck_layer_size=512, weight_decay=1e-4)
        variables = {v.op.name: v.shape.as_list() for v in tf1.global_variables()}
        assert prelogits.shape.as_list() == [None, 512]
        assert end_points['Mixed_5b'].shape.as_list() == [None, 17, 17, 320]
        assert end_points['Mixed_6a'].shape.as_list() == [None, 8, 8, 1088]
        assert end_points['Mixed_7a'].shape.as_list() == [None, 3, 3, 2080]
        assert end_points['PrePool'].shape.as_list() == [None, 3, 3, 1536]
        assert variables['InceptionResnetV2/Repeat/block35_10/Branch_2/Conv2d_0c_3x3/weights'] == [3, 3, 48, 64]
        assert variables['InceptionResnetV2/Repeat_1/block17_20/Branch_1/Conv2d_0c_7x1/weights'] == [7, 1, 160, 192]
        assert variables['InceptionResnetV2/Repeat_2/block8_9/Conv2d_1x1/biases'] == [2080]
        assert variables['InceptionResnetV2/Block8/Conv2d_1x1/weights'] == [1, 1, 448, 2080]
        assert variables['InceptionResnetV2/Mixed_5b/Branch_3/Conv2d_0b_1x1/weights'] == [1, 1, 192, 64]
        assert variables['InceptionResnetV2/Bottleneck/weights'] == [1536, 512]
        assert not any(name.endswith('gamma') for name in variables)
        n_weights = sum(name.endswith('/weights') for name in variables)
        assert len(tf1.get_collection(tf1.GraphKeys.REGULARIZATION_LOSSES)) == n_weights
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            out = sess.run(prelogits, {x: np.zeros((1, 160, 160, 3), np.float32)})
        assert out.shape == (1, 512) and np.all(np.isfinite(out))


def test_session_config_precisions():
    from tensorflow.core.protobuf import rewriter_config_pb2
    on = rewriter_config_pb2.RewriterConfig.ON
    assert session_config('fp32').graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16 != on
    config = session_config('bf16', intra_op_threads=2, inter_op_threads=1)
    assert config.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16 == on
    assert config.intra_op_parallelism_threads == 2 and config.inter_op_parallelism_threads == 1
    with pytest.raises(ValueError):
        session_config('fp8')
    if not tf.config.list_physical_devices('GPU'):   # fp16 is for training on GPUs
        with pytest.raises(FaceNetError, match='--precision fp16 needs a GPU'):
            session_config('fp16')
    import argparse
    parser = add_precision_argument(argparse.ArgumentParser())
    assert parser.parse_args(['--precision', 'bf16']).precision == 'bf16'
    assert parser.parse_args([]).precision == 'fp32'
    for name in PRECISIONS:
        session_config(name)   # every advertised precision is accepted
    with pytest.raises(SystemExit):
        parser.parse_args(['--precision', 'fp16'])
