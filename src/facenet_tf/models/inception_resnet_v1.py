"""Inception-ResNet-v1 face embedding network, variable for variable as the classic FaceNet models.

A checkpoint of the classic network (e.g. the published 20180402-114759 / 20180408-102900 models,
bottleneck 512) restores into this graph without any name mapping: the 490 global variables have the
same names, shapes, order and collections. Batch norm everywhere except the residual projections
(which have biases): decay 0.995, epsilon 0.001, no gamma, the moving statistics updated with the
training forward pass and kept in the TRAINABLE_VARIABLES collection.

    prelogits, end_points = inference(images, keep_probability, phase_train=False,
                                      bottleneck_layer_size=512)
"""

from facenet_tf.tf_setup import configure
from facenet_tf.models import layers
from facenet_tf.models.layers import conv, max_pool

tf = configure()  # TensorFlow set up for TF1 graphs (see facenet_tf.tf_setup)
tf1 = tf.compat.v1

SCOPE = 'InceptionResnetV1'


def batch_norm_params():
    """The batch norm settings of the classic FaceNet networks."""
    return {
        'decay': 0.995,
        'epsilon': 0.001,
        'updates_collections': None,
        'variables_collections': [tf1.GraphKeys.TRAINABLE_VARIABLES],
    }


def block35(net, scale=1.0, activation_fn=tf.nn.relu, scope=None, reuse=None):
    """Residual unit of the 35x35 grid (17x17 for 160px input)."""
    with tf1.variable_scope(scope, 'Block35', [net], reuse=reuse):
        return layers.scaled_residual(net, [
            [conv(32, 1, 'Conv2d_1x1')],
            [conv(32, 1, 'Conv2d_0a_1x1'), conv(32, 3, 'Conv2d_0b_3x3')],
            [conv(32, 1, 'Conv2d_0a_1x1'), conv(32, 3, 'Conv2d_0b_3x3'), conv(32, 3, 'Conv2d_0c_3x3')],
        ], scale, activation_fn)


def block17(net, scale=1.0, activation_fn=tf.nn.relu, scope=None, reuse=None):
    """Residual unit of the 17x17 grid, with factorised 7x7 convolutions."""
    with tf1.variable_scope(scope, 'Block17', [net], reuse=reuse):
        return layers.scaled_residual(net, [
            [conv(128, 1, 'Conv2d_1x1')],
            [conv(128, 1, 'Conv2d_0a_1x1'), conv(128, [1, 7], 'Conv2d_0b_1x7'),
             conv(128, [7, 1], 'Conv2d_0c_7x1')],
        ], scale, activation_fn)


def block8(net, scale=1.0, activation_fn=tf.nn.relu, scope=None, reuse=None):
    """Residual unit of the 8x8 grid, with factorised 3x3 convolutions."""
    with tf1.variable_scope(scope, 'Block8', [net], reuse=reuse):
        return layers.scaled_residual(net, [
            [conv(192, 1, 'Conv2d_1x1')],
            [conv(192, 1, 'Conv2d_0a_1x1'), conv(192, [1, 3], 'Conv2d_0b_1x3'),
             conv(192, [3, 1], 'Conv2d_0c_3x1')],
        ], scale, activation_fn)


def reduction_a(net, k, l, m, n):
    """Grid reduction 35 -> 17: strided conv | 1x1 -> 3x3 -> strided 3x3 | max pool."""
    return layers.branches(net, [
        [conv(n, 3, 'Conv2d_1a_3x3', stride=2, padding='VALID')],
        [conv(k, 1, 'Conv2d_0a_1x1'), conv(l, 3, 'Conv2d_0b_3x3'),
         conv(m, 3, 'Conv2d_1a_3x3', stride=2, padding='VALID')],
        [max_pool('MaxPool_1a_3x3')],
    ])


def reduction_b(net):
    """Grid reduction 17 -> 8: three conv towers ending in strided 3x3 convolutions | max pool."""
    return layers.branches(net, [
        [conv(256, 1, 'Conv2d_0a_1x1'), conv(384, 3, 'Conv2d_1a_3x3', stride=2, padding='VALID')],
        [conv(256, 1, 'Conv2d_0a_1x1'), conv(256, 3, 'Conv2d_1a_3x3', stride=2, padding='VALID')],
        [conv(256, 1, 'Conv2d_0a_1x1'), conv(256, 3, 'Conv2d_0b_3x3'),
         conv(256, 3, 'Conv2d_1a_3x3', stride=2, padding='VALID')],
        [max_pool('MaxPool_1a_3x3')],
    ])


def inference(images, keep_probability, phase_train=True, bottleneck_layer_size=128, weight_decay=0.0,
              reuse=None):
    """Build the network on NHWC float `images`; returns (prelogits [N, bottleneck], end_points).

    phase_train: Python bool (one path in the graph: fastest for inference) or a bool tensor.
    weight_decay > 0 adds an L2 loss per weight tensor to REGULARIZATION_LOSSES."""
    with layers.arg_scope([layers.conv2d, layers.fully_connected],
                          weights_initializer=layers.xavier_initializer(),
                          weights_regularizer=layers.l2_regularizer(weight_decay),
                          normalizer_fn=layers.batch_norm,
                          normalizer_params=batch_norm_params()):
        return inception_resnet_v1(images, is_training=phase_train, dropout_keep_prob=keep_probability,
                                   bottleneck_layer_size=bottleneck_layer_size, reuse=reuse)


def inception_resnet_v1(inputs, is_training=True, dropout_keep_prob=0.8, bottleneck_layer_size=128,
                        reuse=None, scope=SCOPE):
    """The network body; layer defaults (initialiser, regulariser, normaliser) come from arg_scope."""
    end_points = {}

    def stem(net, name, *args, **kwargs):
        net = layers.conv2d(net, *args, scope=name, **kwargs)
        end_points[name] = net
        return net

    with tf1.variable_scope(scope, 'InceptionResnetV1', [inputs], reuse=reuse):
        with layers.arg_scope([layers.batch_norm, layers.dropout], is_training=is_training):
            net = stem(inputs, 'Conv2d_1a_3x3', 32, 3, stride=2, padding='VALID')
            net = stem(net, 'Conv2d_2a_3x3', 32, 3, padding='VALID')
            net = stem(net, 'Conv2d_2b_3x3', 64, 3)
            net = layers.max_pool2d(net, 3, stride=2, padding='VALID', scope='MaxPool_3a_3x3')
            end_points['MaxPool_3a_3x3'] = net
            net = stem(net, 'Conv2d_3b_1x1', 80, 1, padding='VALID')
            net = stem(net, 'Conv2d_4a_3x3', 192, 3, padding='VALID')
            net = stem(net, 'Conv2d_4b_3x3', 256, 3, stride=2, padding='VALID')

            net = end_points['Mixed_5a'] = layers.repeat(net, 5, block35, scale=0.17)
            with tf1.variable_scope('Mixed_6a'):
                net = end_points['Mixed_6a'] = reduction_a(net, 192, 192, 256, 384)
            net = end_points['Mixed_6b'] = layers.repeat(net, 10, block17, scale=0.10)
            with tf1.variable_scope('Mixed_7a'):
                net = end_points['Mixed_7a'] = reduction_b(net)
            net = end_points['Mixed_8a'] = layers.repeat(net, 5, block8, scale=0.20)
            net = end_points['Mixed_8b'] = block8(net, activation_fn=None)

            with tf1.variable_scope('Logits'):
                end_points['PrePool'] = net
                net = layers.avg_pool2d(net, [int(d) for d in net.shape[1:3]], padding='VALID', scope='AvgPool_1a_8x8')
                net = layers.flatten(net)
                net = layers.dropout(net, dropout_keep_prob, scope='Dropout')
                end_points['PreLogitsFlatten'] = net
            net = layers.fully_connected(net, bottleneck_layer_size, activation_fn=None, scope='Bottleneck',
                                         reuse=False)
    return net, end_points
