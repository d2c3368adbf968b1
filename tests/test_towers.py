"""--num_gpus towers on logical CPU devices: the averaged gradient of 2 towers is the 1-tower gradient
of the same batch, a 2-tower training run follows the 1-tower loss curve and writes the same
checkpoint variables, the ops sit on their devices. The network here (this module's `inference`,
used as --model_def test_towers) has no batch norm, whose per-slice moments would differ by design."""
import os

import h5py
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from facenet_tf import train_softmax
from facenet_tf import train_triplet as train_tripletloss
from facenet_tf import model_io, tf_setup
from facenet_tf.training import losses
from facenet_tf.errors import FaceNetError
from facenet_tf.training import towers as towers_lib
from facenet_tf.models import layers
from training_faces import run_training

tf1 = tf.compat.v1
SIZE = 16
NROF_CLASSES = 4


def inference(images, keep_probability, phase_train=True, bottleneck_layer_size=128, weight_decay=0.0, reuse=None):
    """A two-layer network without batch norm: 3x3 stride-2 convolution + ReLU, fully connected."""
    with tf1.variable_scope('TinyNet', reuse=reuse):
        regularizer = layers.l2_regularizer(weight_decay)
        net = layers.conv2d(images, 8, 3, stride=2, weights_initializer=layers.xavier_initializer(),
                            weights_regularizer=regularizer, scope='Conv2d_1a_3x3')
        net = layers.flatten(net)
        net = layers.fully_connected(net, bottleneck_layer_size, activation_fn=None,
                                     weights_initializer=layers.xavier_initializer(),
                                     weights_regularizer=regularizer, scope='Bottleneck')
    return net, {}


def _tower_gradients(num_towers, images, labels, values=None):
    """(variable names, their gradients, the variable values) of the softmax loss of a batch on
    num_towers towers on logical CPU devices; `values` sets the variables first."""
    with tf.Graph().as_default():
        tf1.set_random_seed(3)
        x = tf1.placeholder(tf.float32, [None, SIZE, SIZE, 3])
        y = tf1.placeholder(tf.int64, [None])
        towers = towers_lib.make_towers(num_towers, nrof_gpus=0)
        slices, weights = towers_lib.split_batch([x, y], num_towers)
        tower_losses = []
        for tower, (xs, ys) in zip(towers, slices):
            with tower.scope():
                prelogits, _ = inference(xs, 1.0, bottleneck_layer_size=8, weight_decay=1e-3)
                logits = losses.softmax_logits(prelogits, NROF_CLASSES, 1e-3)
                tower_losses.append(tf.add_n([losses.cross_entropy(logits, ys)] + tower.regularization_losses()))
        variables = tf1.trainable_variables()
        opt = tf1.train.GradientDescentOptimizer(0.1)
        grads = towers_lib.tower_gradients(opt, towers, tower_losses, weights, variables)
        config = tf_setup.session_config(device_count=towers_lib.session_device_count(num_towers, nrof_gpus=0))
        with tf1.Session(config=config) as sess:
            sess.run(tf1.global_variables_initializer())
            if values is not None:
                for var, value in zip(variables, values):
                    var.load(value, sess)
            metadata = tf1.RunMetadata()
            grad_values = sess.run([g for g, _ in grads], {x: images, y: labels},
                                   options=tf1.RunOptions(trace_level=tf1.RunOptions.FULL_TRACE), run_metadata=metadata)
            var_values = sess.run(variables)
        if num_towers > 1:      # where the ops ran
            ran_on = {node.node_name: dev.device for dev in metadata.step_stats.dev_stats for node in dev.node_stats}
            for i in (0, 1):    # forward (convolution fused into the ReLU) and backward
                conv = 'tower_%d/TinyNet/Conv2d_1a_3x3/' % i
                assert ran_on[conv + 'Relu'].endswith('CPU:%d' % i)
                backward = 'tower_%d/gradients/%sConv2D_grad/Conv2DBackpropFilter' % (i, conv)
                assert ran_on[backward].endswith('CPU:%d' % i)
            assert ran_on['TinyNet/Conv2d_1a_3x3/weights'].endswith('CPU:0')
    return [v.op.name for v in variables], grad_values, var_values


@pytest.mark.parametrize('batch', [8, 7])
def test_averaged_gradient_of_two_towers_is_the_one_tower_gradient(batch):
    """Same batch, same weights: 2 towers (even slices of 4 + 4, and uneven 3 + 4, weighted by
    their share) give the 1-tower gradient of every variable to 1e-5."""
    rng = np.random.RandomState(0)
    images = rng.uniform(-1, 1, (batch, SIZE, SIZE, 3)).astype(np.float32)
    labels = rng.randint(0, NROF_CLASSES, batch)
    names1, grads1, values = _tower_gradients(1, images, labels)
    names2, grads2, _ = _tower_gradients(2, images, labels, values)
    assert names1 == names2 == ['TinyNet/Conv2d_1a_3x3/weights', 'TinyNet/Conv2d_1a_3x3/biases',
                                'TinyNet/Bottleneck/weights', 'TinyNet/Bottleneck/biases',
                                'Logits/weights', 'Logits/biases']
    for name, g1, g2 in zip(names1, grads1, grads2):
        assert np.abs(g1).max() > 0, name
        np.testing.assert_allclose(g2, g1, rtol=0, atol=1e-5, err_msg=name)


def test_split_batch_keeps_groups_together():
    with tf.Graph().as_default():
        x = tf1.placeholder(tf.int32, [None])
        slices, weights = towers_lib.split_batch([x], 2, group_size=3)
        with tf1.Session() as sess:
            parts, shares = sess.run([[s[0] for s in slices], weights], {x: np.arange(15)})
    assert [p.tolist() for p in parts] == [list(range(6)), list(range(6, 15))]
    np.testing.assert_allclose(shares, [0.4, 0.6])


def test_tower_devices():
    assert towers_lib.tower_devices(1, nrof_gpus=0) == [None]
    assert towers_lib.tower_devices(2, nrof_gpus=0) == ['/cpu:0', '/cpu:1']
    assert towers_lib.tower_devices(2, nrof_gpus=2) == ['/gpu:0', '/gpu:1']
    assert towers_lib.tower_devices(1, nrof_gpus=1) == ['/gpu:0']
    assert towers_lib.session_device_count(2, nrof_gpus=0) == {'CPU': 2}
    assert towers_lib.session_device_count(2, nrof_gpus=2) == {}
    with pytest.raises(FaceNetError, match=r'--num_gpus 4, but TensorFlow sees 2 GPUs'):
        towers_lib.tower_devices(4, nrof_gpus=2)


@pytest.fixture(scope='module')
def synthetic_faces(tmp_path_factory):
    """4 classes x 8 images of 16 px: a class colour plus noise."""
    root = tmp_path_factory.mktemp('synthetic') / 'train'
    rng = np.random.RandomState(1)
    for c in range(NROF_CLASSES):
        os.makedirs(root / ('c%d' % c))
        colour = rng.uniform(40, 215, 3)
        for i in range(8):
            pixels = np.clip(colour + rng.normal(0, 40, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / ('c%d' % c) / ('%d.png' % i))
    return root


SOFTMAX = ['--model_def', 'test_towers', '--image_size', str(SIZE), '--batch_size', '8', '--embedding_size', '8',
           '--nrof_preprocess_threads', '1', '--seed', '2', '--max_nrof_epochs', '2', '--epoch_size', '4',
           '--optimizer', 'MOM', '--learning_rate', '0.05', '--weight_decay', '1e-3', '--loss', 'cosface',
           '--margin_s', '8', '--prelogits_norm_loss_factor', '1e-3', '--use_fixed_image_standardization']


@pytest.fixture(scope='module')
def softmax_runs(synthetic_faces, tmp_path_factory):
    """The same training on 1 and on 2 towers: {num_gpus: (exit code, model dir, log dir)}."""
    return {n: run_training(train_softmax, synthetic_faces, tmp_path_factory.mktemp('towers%d' % n),
                            SOFTMAX + ['--num_gpus', str(n)]) for n in (1, 2)}


def _losses(log_dir):
    with h5py.File(os.path.join(log_dir, 'stat.h5'), 'r') as f:
        return np.array(f['loss']), np.array(f['accuracy'])


def test_two_tower_run_follows_the_one_tower_loss_curve(softmax_runs):
    """8 steps (2 epochs) of CosFace with momentum: the per-step losses of 2 towers equal those of 1
    tower within 1e-4 (float sums in another order; identical batches, no batch norm)."""
    (code1, _, log1), (code2, _, log2) = softmax_runs[1], softmax_runs[2]
    assert code1 == code2 == 0
    loss1, accuracy1 = _losses(log1)
    loss2, accuracy2 = _losses(log2)
    assert loss1.shape == (8,) and loss1[-1] < loss1[0]
    np.testing.assert_allclose(loss2, loss1, rtol=1e-4, atol=0)
    np.testing.assert_allclose(accuracy2, accuracy1, atol=1e-6)


def _checkpoint_variables(model_dir):
    prefix = tf.train.latest_checkpoint(model_dir)
    return sorted(tf.train.load_checkpoint(prefix).get_variable_to_shape_map().items())


def test_two_tower_checkpoint_is_the_one_device_checkpoint(softmax_runs):
    """Same variable names and shapes in the checkpoint; the model folder loads in the inference
    loader and embeds as the 1-tower one does after the same training (1e-4)."""
    (_, model1, _), (_, model2, _) = softmax_runs[1], softmax_runs[2]
    assert _checkpoint_variables(model2) == _checkpoint_variables(model1)
    images = np.random.RandomState(5).uniform(-1, 1, (5, SIZE, SIZE, 3)).astype(np.float32)
    embeddings = []
    for model in (model1, model2):
        with tf.Graph().as_default(), tf1.Session() as sess:
            model_io.load_for_inference(model, sess)
            embeddings.append(sess.run('embeddings:0', {'input:0': images}))
    assert embeddings[0].shape == (5, 8)
    np.testing.assert_allclose(embeddings[1], embeddings[0], atol=1e-4)


def test_triplet_training_on_two_towers(synthetic_faces, tmp_path):
    """train_tripletloss.py --num_gpus 2 (in-batch mining: each tower mines its slice of whole
    triplets, the counts are added) trains and writes the one-device variables."""
    code, model_dir, _ = run_training(train_tripletloss, synthetic_faces, tmp_path, [
        '--model_def', 'test_towers', '--image_size', str(SIZE), '--batch_size', '12', '--embedding_size', '8',
        '--nrof_preprocess_threads', '1', '--max_nrof_epochs', '1', '--epoch_size', '2', '--images_per_person', '3',
        '--triplet_mining', 'batch', '--triplet_selection', 'hardest', '--num_gpus', '2'])
    assert code == 0
    names = [name for name, _ in _checkpoint_variables(model_dir)]
    assert names == ['TinyNet/Bottleneck/biases', 'TinyNet/Bottleneck/biases/ExponentialMovingAverage',
                     'TinyNet/Bottleneck/weights', 'TinyNet/Bottleneck/weights/ExponentialMovingAverage',
                     'TinyNet/Conv2d_1a_3x3/biases', 'TinyNet/Conv2d_1a_3x3/biases/ExponentialMovingAverage',
                     'TinyNet/Conv2d_1a_3x3/weights', 'TinyNet/Conv2d_1a_3x3/weights/ExponentialMovingAverage']
