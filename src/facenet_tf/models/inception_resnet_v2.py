"""Inception-ResNet-v2 face embedding network with the classic FaceNet variable names.

Same layer conventions as inception_resnet_v1 (batch norm decay 0.995, epsilon 0.001, no gamma,
statistics in TRAINABLE_VARIABLES, biases only on the residual projections); weights start from a
truncated normal (stddev 0.1) as the classic variant did. Wider and deeper than v1 (10/20/9 residual
units): about 3x the multiply-adds, so on a CPU v1 or small_cnn is usually the better choice.
"""

from facenet_tf.tf_setup import configure
from facenet_tf.models import layers
from facenet_tf.models.inception_resnet_v1 import batch_norm_params
from facenet_tf.models.layers import conv, max_pool

tf = configure()  # TensorFlow set up for TF1 graphs (see facenet_tf.tf_setup)
tf1 = tf.compat.v1

SCOPE = 'InceptionResnetV2'


def block35(net, scale=1.0, activation_fn=tf.nn.relu, scope=None, reuse=None):
    """Residual unit of the 35x35 grid."""
    with tf1.variable_scope(scope, 'Block35', [net], reuse=reuse):
        return layers.scaled_residual(net, [
            [conv(32, 1, 'Conv2d_1x1')],
            [conv(32, 1, 'Conv2d_0a_1x1'), conv(32, 3, 'Conv2d_0b_3x3')],
            [conv(32, 1, 'Conv2d_0a_1x1'), conv(48, 3, 'Conv2d_0b_3x3'), conv(64, 3, 'Conv2d_0c_3x3')],
        ], scale, activation_fn)


def block17(net, scale=1.0, activation_fn=tf.nn.relu, scope=None, reuse=None):
    """Residual unit of the 17x17 grid, with factorised 7x7 convolutions."""
    with tf1.variable_scope(scope, 'Block17', [net], reuse=reuse):
        return layers.scaled_residual(net, [
            [conv(192, 1, 'Conv2d_1x1')],
            [conv(128, 1, 'Conv2d_0a_1x1'), conv(160, [1, 7], 'Conv2d_0b_1x7'),
             conv(192, [7, 1], 'Conv2d_0c_7x1')],
        ], scale, activation_fn)


def block8(net, scale=1.0, activation_fn=tf.nn.relu, scope=None, reuse=None):
    """Residual unit of the 8x8 grid, with factorised 3x3 convolutions."""
    with tf1.variable_scope(scope, 'Block8', [net], reuse=reuse):
        return layers.scaled_residual(net, [
            [conv(192, 1, 'Conv2d_1x1')],
            [conv(192, 1, 'Conv2d_0a_1x1'), conv(224, [1, 3], 'Conv2d_0b_1x3'),
             conv(256, [3, 1], 'Conv2d_0c_3x1')],
        ], scale, activation_fn)


def _avg_pool_then_conv(num_outputs, scope_pool, scope_conv):
    return [lambda x: layers.avg_pool2d(x, 3, stride=1, padding='SAME', scope=scope_pool),
            conv(num_outputs, 1, scope_conv)]


def inference(images, keep_probability, phase_train=True, bottleneck_layer_size=128, weight_decay=0.0,
              reuse=None):
    """Build the network on NHWC float `images`; returns (prelogits [N, bottleneck], end_points)."""
    with layers.arg_scope([layers.conv2d, layers.fully_connected],
                          weights_initializer=tf1.truncated_normal_initializer(stddev=0.1),
                          weights_regularizer=layers.l2_regularizer(weight_decay),
                          normalizer_fn=layers.batch_norm,
                          normalizer_params=batch_norm_params()):
        return inception_resnet_v2(images, is_training=phase_train, dropout_keep_prob=keep_probability,
                                   bottleneck_layer_size=bottleneck_layer_size, reuse=reuse)


def inception_resnet_v2(inputs, is_training=True, dropout_keep_prob=0.8, bottleneck_layer_size=128,
                        reuse=None, scope=SCOPE):
    """The network body; layer defaults (initialiser, regulariser, normaliser) come from arg_scope."""
    end_points = {}

    def stem(net, name, *args, **kwargs):
        net = layers.conv2d(net, *args, scope=name, **kwargs)
        end_points[name] = net
        return net

    with tf1.variable_scope(scope, 'InceptionResnetV2', [inputs], reuse=reuse):
        with layers.arg_scope([layers.batch_norm, layers.dropout], is_training=is_training):
            net = stem(inputs, 'Conv2d_1a_3x3', 32, 3, stride=2, padding='VALID')
            net = stem(net, 'Conv2d_2a_3x3', 32, 3, padding='VALID')
            net = stem(net, 'Conv2d_2b_3x3', 64, 3)
            net = end_points['MaxPool_3a_3x3'] = layers.max_pool2d(net, 3, stride=2, padding='VALID',
                                                                   scope='MaxPool_3a_3x3')
            net = stem(net, 'Conv2d_3b_1x1', 80, 1, padding='VALID')
            net = stem(net, 'Conv2d_4a_3x3', 192, 3, padding='VALID')
            net = end_points['MaxPool_5a_3x3'] = layers.max_pool2d(net, 3, stride=2, padding='VALID',
                                                                   scope='MaxPool_5a_3x3')
            with tf1.variable_scope('Mixed_5b'):
                net = end_points['Mixed_5b'] = layers.branches(net, [
                    [conv(96, 1, 'Conv2d_1x1')],
                    [conv(48, 1, 'Conv2d_0a_1x1'), conv(64, 5, 'Conv2d_0b_5x5')],
                    [conv(64, 1, 'Conv2d_0a_1x1'), conv(96, 3, 'Conv2d_0b_3x3'),
                     conv(96, 3, 'Conv2d_0c_3x3')],
                    _avg_pool_then_conv(64, 'AvgPool_0a_3x3', 'Conv2d_0b_1x1'),
                ])
            net = layers.repeat(net, 10, block35, scale=0.17)
            with tf1.variable_scope('Mixed_6a'):
                net = end_points['Mixed_6a'] = layers.branches(net, [
                    [conv(384, 3, 'Conv2d_1a_3x3', stride=2, padding='VALID')],
                    [conv(256, 1, 'Conv2d_0a_1x1'), conv(256, 3, 'Conv2d_0b_3x3'),
                     conv(384, 3, 'Conv2d_1a_3x3', stride=2, padding='VALID')],
                    [max_pool('MaxPool_1a_3x3')],
                ])
            net = layers.repeat(net, 20, block17, scale=0.10)
            with tf1.variable_scope('Mixed_7a'):
                net = end_points['Mixed_7a'] = layers.branches(net, [
                    [conv(256, 1, 'Conv2d_0a_1x1'), conv(384, 3, 'Conv2d_1a_3x3', stride=2, padding='VALID')],
                    [conv(256, 1, 'Conv2d_0a_1x1'), conv(288, 3, 'Conv2d_1a_3x3', stride=2, padding='VALID')],
                    [conv(256, 1, 'Conv2d_0a_1x1'), conv(288, 3, 'Conv2d_0b_3x3'),
                     conv(320, 3, 'Conv2d_1a_3x3', stride=2, padding='VALID')],
                    [max_pool('MaxPool_1a_3x3')],
                ])
            net = layers.repeat(net, 9, block8, scale=0.20)
            net = block8(net, activation_fn=None)
            net = stem(net, 'Conv2d_7b_1x1', 1536, 1)

            with tf1.variable_scope('Logits'):
                end_points['PrePool'] = net
                net = layers.avg_pool2d(net, [int(d) for d in net.shape[1:3]], padding='VALID',
                                        scope='AvgPool_1a_8x8')
                net = layers.flatten(net)
                net = layers.dropout(net, dropout_keep_prob, scope='Dropout')
                end_points['PreLogitsFlatten'] = net
            net = layers.fully_connected(net, bottleneck_layer_size, activation_fn=None, scope='Bottleneck',
                                         reuse=False)
    return net, end_points
