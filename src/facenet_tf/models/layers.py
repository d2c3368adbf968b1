"""Graph-mode layers on tensorflow.compat.v1 that name their variables as the classic checkpoints do.

Published FaceNet checkpoints were written by networks built from a small set of layers whose
variables are `<scope>/weights`, `<scope>/biases` and `<scope>/BatchNorm/{beta,moving_mean,
moving_variance}`. The functions here create exactly those variables (same order, shapes, collections,
initialisers and regularisers), so such checkpoints restore without any name mapping.

Shared defaults: a function decorated with `add_arg_scope` takes its missing keyword arguments from
the innermost enclosing `arg_scope([...], **defaults)` that lists it; explicit arguments always win.

`is_training` of `batch_norm` / `dropout` may be a Python bool (the graph holds only one path) or a
bool tensor (a tf.cond picks the path at run time).
"""
import contextlib
import functools
import threading

from facenet_tf.tf_setup import configure

tf = configure()  # TensorFlow set up for TF1 graphs (see facenet_tf.tf_setup)
tf1 = tf.compat.v1

_state = threading.local()


def _scope_stack():
    if not hasattr(_state, 'stack'):
        _state.stack = [{}]
    return _state.stack


def add_arg_scope(func):
    """Let `func` take default keyword arguments from the enclosing arg_scope."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        defaults = _scope_stack()[-1].get(wrapper, {})
        merged = dict(defaults)
        merged.update(kwargs)
        return func(*args, **merged)
    wrapper.takes_arg_scope = True
    return wrapper


@contextlib.contextmanager
def arg_scope(funcs, **defaults):
    """Within the block, each listed layer function uses `defaults` for arguments not given."""
    current = _scope_stack()[-1]
    new = dict(current)
    for func in funcs:
        if not getattr(func, 'takes_arg_scope', False):
            raise ValueError('%s does not take arg_scope defaults' % getattr(func, '__name__', func))
        merged = dict(current.get(func, {}))
        merged.update(defaults)
        new[func] = merged
    _scope_stack().append(new)
    try:
        yield new
    finally:
        _scope_stack().pop()


def l2_regularizer(scale):
    """scale * sum(w**2) / 2 for the REGULARIZATION_LOSSES collection; None (no loss) for scale 0."""
    scale = float(scale)
    if scale < 0.0:
        raise ValueError('weight decay must be >= 0, got %g' % scale)
    if scale == 0.0:
        return None

    def l2(weights):
        with tf1.name_scope(None, 'l2_regularizer', [weights]) as name:
            return tf.multiply(tf.constant(scale, dtype=weights.dtype.base_dtype),
                               tf.nn.l2_loss(weights), name=name)
    return l2


def xavier_initializer():
    """Uniform Glorot initialiser (fans from the receptive field times channels)."""
    return tf1.glorot_uniform_initializer()


def model_variable(name, shape, initializer, regularizer=None, trainable=True, collections=None):
    """A float32 variable in GLOBAL_VARIABLES and MODEL_VARIABLES plus `collections`.

    A non-trainable variable listed for TRAINABLE_VARIABLES goes into that collection while keeping
    Variable.trainable False (how the classic batch norm statistics came to be saved by
    `Saver(tf.trainable_variables())`)."""
    all_collections = [tf1.GraphKeys.GLOBAL_VARIABLES, tf1.GraphKeys.MODEL_VARIABLES]
    for key in collections or ():
        if key not in all_collections:
            all_collections.append(key)
    known = len(tf1.get_collection_ref(tf1.GraphKeys.GLOBAL_VARIABLES))
    variable = tf1.get_variable(name, shape=shape, dtype=tf.float32, initializer=initializer,
                                trainable=trainable, collections=all_collections)
    created = len(tf1.get_collection_ref(tf1.GraphKeys.GLOBAL_VARIABLES)) > known
    if regularizer is not None and created:
        with tf1.name_scope(variable.op.name + '/Regularizer/'):
            loss = regularizer(variable)
        if loss is not None:
            tf1.add_to_collection(tf1.GraphKeys.REGULARIZATION_LOSSES, loss)
    return variable


def _collections_for(variables_collections, name):
    if isinstance(variables_collections, dict):
        return variables_collections.get(name)
    return variables_collections


def _pair(value):
    if isinstance(value, (list, tuple)):
        return int(value[0]), int(value[1])
    return int(value), int(value)


def _static_bool(value):
    """The Python bool of `value` when it is known while building the graph, else None."""
    if isinstance(value, bool):
        return value
    if tf.is_tensor(value):
        constant = tf.get_static_value(value)
        return None if constant is None else bool(constant)
    return bool(value)


def smart_cond(pred, true_fn, false_fn):
    """true_fn() or false_fn() when pred is known now; a tf.cond on the bool tensor otherwise."""
    known = _static_bool(pred)
    if known is None:
        return tf.cond(pred, true_fn, false_fn)
    return true_fn() if known else false_fn()


@add_arg_scope
def batch_norm(inputs, decay=0.999, center=True, scale=False, epsilon=0.001, is_training=True,
               updates_collections=tf1.GraphKeys.UPDATE_OPS, variables_collections=None,
               trainable=True, reuse=None, scope=None):
    """Batch normalisation over the last axis of a rank 2 or rank 4 (NHWC) tensor.

    Training normalises with the batch moments and moves `moving_mean` / `moving_variance` towards
    them by (1 - decay). With updates_collections=None those updates run with the output (forced by a
    control dependency, as the classic FaceNet networks had it); otherwise their ops are added to that
    collection for the training step to run. Inference uses the moving statistics."""
    with tf1.variable_scope(scope, 'BatchNorm', [inputs], reuse=reuse):
        rank = inputs.shape.ndims
        if rank not in (2, 4):
            raise ValueError('batch_norm needs a rank 2 or 4 input, got rank %s' % rank)
        channels = int(inputs.shape[-1])
        beta = gamma = None
        if center:
            beta = model_variable('beta', [channels], tf1.zeros_initializer(), trainable=trainable,
                                  collections=_collections_for(variables_collections, 'beta'))
        if scale:
            gamma = model_variable('gamma', [channels], tf1.ones_initializer(), trainable=trainable,
                                   collections=_collections_for(variables_collections, 'gamma'))
        moving_mean = model_variable('moving_mean', [channels], tf1.zeros_initializer(), trainable=False,
                                     collections=_collections_for(variables_collections, 'moving_mean'))
        moving_variance = model_variable('moving_variance', [channels], tf1.ones_initializer(),
                                         trainable=False,
                                         collections=_collections_for(variables_collections,
                                                                      'moving_variance'))
        if gamma is None:
            gamma = tf.ones([channels], tf.float32)
        if beta is None:
            beta = tf.zeros([channels], tf.float32)
        x = tf.reshape(inputs, [-1, 1, 1, channels]) if rank == 2 else inputs

        def inference():
            y, _, _ = tf1.nn.fused_batch_norm(x, gamma, beta, mean=moving_mean, variance=moving_variance,
                                              epsilon=epsilon, is_training=False)
            return y

        def make_updates(mean, variance):
            with tf1.name_scope('AssignMovingAvg'):
                update_mean = tf1.assign_sub(moving_mean, (moving_mean - mean) * (1.0 - decay))
                update_variance = tf1.assign_sub(moving_variance,
                                                 (moving_variance - variance) * (1.0 - decay))
            return update_mean, update_variance

        def training():
            return tf1.nn.fused_batch_norm(x, gamma, beta, epsilon=epsilon, is_training=True)

        if updates_collections is None:
            def training_with_updates():
                y, mean, variance = training()
                with tf.control_dependencies(make_updates(mean, variance)):
                    return tf.identity(y)
            outputs = smart_cond(is_training, training_with_updates, inference)
        elif _static_bool(is_training) is False:
            outputs = inference()
        else:
            outputs, mean, variance = smart_cond(
                is_training, training,
                lambda: (inference(), tf.identity(moving_mean), tf.identity(moving_variance)))
            for update in make_updates(mean, variance):
                tf1.add_to_collections(updates_collections, update)
        if rank == 2:
            outputs = tf.reshape(outputs, tf.shape(inputs))
            outputs.set_shape(inputs.shape)
        return outputs


def _apply_normalizer_or_bias(outputs, num_outputs, normalizer_fn, normalizer_params, biases_initializer,
                              biases_regularizer, variables_collections, trainable):
    if normalizer_fn is not None:
        return normalizer_fn(outputs, **(normalizer_params or {}))
    if biases_initializer is None:
        return outputs
    biases = model_variable('biases', [num_outputs], biases_initializer, regularizer=biases_regularizer,
                            trainable=trainable, collections=_collections_for(variables_collections, 'biases'))
    return tf.nn.bias_add(outputs, biases)


@add_arg_scope
def conv2d(inputs, num_outputs, kernel_size, stride=1, padding='SAME', activation_fn=tf.nn.relu,
           normalizer_fn=None, normalizer_params=None, weights_initializer=None, weights_regularizer=None,
           biases_initializer=tf1.zeros_initializer(), biases_regularizer=None, variables_collections=None,
           trainable=True, reuse=None, scope=None):
    """2-D convolution (NHWC), then batch norm or biases, then the activation."""
    with tf1.variable_scope(scope, 'Conv', [inputs], reuse=reuse):
        kh, kw = _pair(kernel_size)
        sh, sw = _pair(stride)
        shape = [kh, kw, int(inputs.shape[-1]), int(num_outputs)]
        weights = model_variable('weights', shape, weights_initializer or xavier_initializer(),
                                 regularizer=weights_regularizer, trainable=trainable,
                                 collections=_collections_for(variables_collections, 'weights'))
        outputs = tf.nn.conv2d(inputs, weights, [1, sh, sw, 1], padding.upper())
        outputs = _apply_normalizer_or_bias(outputs, int(num_outputs), normalizer_fn, normalizer_params,
                                            biases_initializer, biases_regularizer, variables_collections,
                                            trainable)
        return activation_fn(outputs) if activation_fn is not None else outputs


@add_arg_scope
def fully_connected(inputs, num_outputs, activation_fn=tf.nn.relu, normalizer_fn=None,
                    normalizer_params=None, weights_initializer=None, weights_regularizer=None,
                    biases_initializer=tf1.zeros_initializer(), biases_regularizer=None,
                    variables_collections=None, trainable=True, reuse=None, scope=None):
    """Dense layer on a [N, D] input, then batch norm or biases, then the activation."""
    with tf1.variable_scope(scope, 'fully_connected', [inputs], reuse=reuse):
        shape = [int(inputs.shape[-1]), int(num_outputs)]
        weights = model_variable('weights', shape, weights_initializer or xavier_initializer(),
                                 regularizer=weights_regularizer, trainable=trainable,
                                 collections=_collections_for(variables_collections, 'weights'))
        outputs = tf.matmul(inputs, weights)
        outputs = _apply_normalizer_or_bias(outputs, int(num_outputs), normalizer_fn, normalizer_params,
                                            biases_initializer, biases_regularizer, variables_collections,
                                            trainable)
        return activation_fn(outputs) if activation_fn is not None else outputs


@add_arg_scope
def max_pool2d(inputs, kernel_size, stride=2, padding='VALID', scope=None):
    """Max pooling (NHWC)."""
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(stride)
    with tf1.name_scope(scope, 'MaxPool2D', [inputs]):
        return tf.nn.max_pool2d(inputs, [1, kh, kw, 1], [1, sh, sw, 1], padding.upper())


@add_arg_scope
def avg_pool2d(inputs, kernel_size, stride=2, padding='VALID', scope=None):
    """Average pooling (NHWC)."""
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(stride)
    with tf1.name_scope(scope, 'AvgPool2D', [inputs]):
        return tf.nn.avg_pool2d(inputs, [1, kh, kw, 1], [1, sh, sw, 1], padding.upper())


@add_arg_scope
def dropout(inputs, keep_prob=0.5, is_training=True, scope=None):
    """Keep each value with probability keep_prob (scaled by 1/keep_prob) while training."""
    with tf1.name_scope(scope, 'Dropout', [inputs]):
        return smart_cond(is_training,
                          lambda: tf.nn.dropout(inputs, rate=1.0 - tf.cast(keep_prob, inputs.dtype)),
                          lambda: tf.identity(inputs))


def flatten(inputs, scope=None):
    """[N, ...] to [N, prod(...)]."""
    with tf1.name_scope(scope, 'Flatten', [inputs]):
        size = 1
        for dim in inputs.shape[1:]:
            size *= int(dim)
        return tf.reshape(inputs, [-1, size])


def repeat(inputs, repetitions, layer, *args, **kwargs):
    """Apply `layer` `repetitions` times in a 'Repeat' scope; the i-th call has scope
    '<layer name>_<i>' (so names read `Repeat/block35_1`, `Repeat_1/block17_3`, ...)."""
    scope = kwargs.pop('scope', None)
    with tf1.variable_scope(scope, 'Repeat', [inputs]):
        outputs = inputs
        for i in range(repetitions):
            outputs = layer(outputs, *args, scope='%s_%d' % (layer.__name__, i + 1), **kwargs)
        return outputs


def branches(inputs, towers):
    """Run each tower (a list of one-argument layer calls) on `inputs` in scope 'Branch_<i>' and
    concatenate the tower outputs on the channel axis, in tower order."""
    outputs = []
    for i, tower in enumerate(towers):
        with tf1.variable_scope('Branch_%d' % i):
            x = inputs
            for layer in tower:
                x = layer(x)
            outputs.append(x)
    return tf.concat(outputs, 3)


def conv(num_outputs, kernel_size, scope, stride=1, padding='SAME'):
    """A conv2d call with these arguments, for use in a tower."""
    return lambda x: conv2d(x, num_outputs, kernel_size, stride=stride, padding=padding, scope=scope)


def max_pool(scope, kernel_size=3, stride=2, padding='VALID'):
    """A max_pool2d call with these arguments, for use in a tower."""
    return lambda x: max_pool2d(x, kernel_size, stride=stride, padding=padding, scope=scope)


def scaled_residual(inputs, towers, scale, activation_fn):
    """Inception-ResNet residual unit: inputs + scale * (1x1 linear projection with biases of the
    concatenated towers), then the activation (None for the last unit of a network)."""
    mixed = branches(inputs, towers)
    up = conv2d(mixed, int(inputs.shape[3]), 1, normalizer_fn=None, activation_fn=None, scope='Conv2d_1x1')
    outputs = inputs + scale * up
    return activation_fn(outputs) if activation_fn is not None else outputs
