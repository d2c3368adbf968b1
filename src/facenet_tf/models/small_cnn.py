"""A small residual CNN for CPU experiments and training demos (~2 M parameters, ~0.1 G multiply-adds
per 96x96 image, ~14x fewer than Inception-ResNet-v1 at 160x160).

Five stride-2 3x3 convolutions take the image down 32x (96 -> 3, 112 -> 4, 160 -> 5); a residual unit
of two 3x3 convolutions follows each of the middle three. Batch norm + ReLU everywhere, global average
pooling (flattening in `small_cnn_flat`), dropout, and the same `Bottleneck` layer (fully connected +
batch norm, no activation) as the Inception-ResNet networks, so it drops into the same training and
evaluation scripts:

    prelogits, end_points = inference(images, keep_probability, phase_train=True,
                                      bottleneck_layer_size=128, weight_decay=5e-4)
"""
from facenet_tf.tf_setup import configure
from facenet_tf.models import layers
from facenet_tf.models.inception_resnet_v1 import batch_norm_params

tf = configure()  # TensorFlow set up for TF1 graphs (see facenet_tf.tf_setup)
tf1 = tf.compat.v1

SCOPE = 'SmallCNN'

# (scope of the stride-2 convolution, its channels, whether a residual unit follows)
STAGES = (
    ('Conv2d_1a_3x3', 24, False),
    ('Conv2d_2a_3x3', 48, True),
    ('Conv2d_3a_3x3', 96, True),
    ('Conv2d_4a_3x3', 192, True),
    ('Conv2d_5a_3x3', 384, False),
)
HEAD_CHANNELS = 512


def residual_unit(net, scope):
    """relu(net + bn(conv3x3(relu(bn(conv3x3(net))))))."""
    channels = int(net.shape[-1])
    with tf1.variable_scope(scope):
        x = layers.conv2d(net, channels, 3, scope='Conv2d_0a_3x3')
        x = layers.conv2d(x, channels, 3, activation_fn=None, scope='Conv2d_0b_3x3')
        return tf.nn.relu(net + x)


def inference(images, keep_probability, phase_train=True, bottleneck_layer_size=128, weight_decay=0.0,
              reuse=None):
    """Build the network on NHWC float `images`; returns (prelogits [N, bottleneck], end_points)."""
    return build(images, keep_probability, phase_train, bottleneck_layer_size, weight_decay, reuse)


def build(images, keep_probability, phase_train=True, bottleneck_layer_size=128, weight_decay=0.0, reuse=None,
          flatten=False):
    """The network; the head averages the last feature map over its positions, or with `flatten`
    keeps them all (a static image size is then needed: the Bottleneck weights depend on it)."""
    end_points = {}
    with layers.arg_scope([layers.conv2d, layers.fully_connected],
                          weights_initializer=tf1.variance_scaling_initializer(
                              scale=2.0, mode='fan_in', distribution='truncated_normal'),
                          weights_regularizer=layers.l2_regularizer(weight_decay),
                          normalizer_fn=layers.batch_norm,
                          normalizer_params=batch_norm_params()):
        with tf1.variable_scope(SCOPE, 'SmallCNN', [images], reuse=reuse):
            with layers.arg_scope([layers.batch_norm, layers.dropout], is_training=phase_train):
                net = images
                for i, (scope, channels, with_unit) in enumerate(STAGES):
                    net = end_points[scope] = layers.conv2d(net, channels, 3, stride=2, scope=scope)
                    if with_unit:
                        name = 'Block_%d' % i
                        net = end_points[name] = residual_unit(net, name)
                net = end_points['Conv2d_5b_1x1'] = layers.conv2d(net, HEAD_CHANNELS, 1,
                                                                  scope='Conv2d_5b_1x1')
                with tf1.variable_scope('Logits'):
                    end_points['PrePool'] = net
                    if flatten:
                        net = layers.flatten(net)
                    else:
                        net = tf.reduce_mean(net, [1, 2], name='AvgPool')
                    net = layers.dropout(net, keep_probability, scope='Dropout')
                    end_points['PreLogitsFlatten'] = net
                net = layers.fully_connected(net, bottleneck_layer_size, activation_fn=None,
                                             scope='Bottleneck')
    return net, end_points
