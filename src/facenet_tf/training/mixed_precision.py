"""Mixed-precision training (--precision bf16 / fp16): where the reduced precision stops, and dynamic
loss scaling for float16.

The precision itself is a grappler rewrite of the session (tf_setup.session_config): oneDNN's
bfloat16 rewrite on CPUs, the float16 rewrite on GPUs. It runs convolutions and matrix products
(and their gradients, batch norm, activations between them) in the reduced type; variables,
optimizer updates and moving averages stay float32, since their ops are not in its lists.

fp32_boundary: left alone, the rewrite also takes the l2 normalisation and the loss (squares, sums,
differences between the products of the forward and the backward pass) into bfloat16: a triplet
loss of 0.2676 came out as 0.267578125, 8 bits of mantissa. A float64 round trip on the network's
output (exact, and a negligible cost on a batch x embedding tensor) is a type the rewrite does not
follow, so everything after it, forward and backward, stays float32.

LossScaleOptimizer: float16 keeps about 6e-8 as its smallest value, so small gradients become zero
in the backward pass. The loss is multiplied by a scale before the gradients are taken and the
gradients divided by it after, in float32, so the float16 part of the backward pass works on larger
values. The scale is dynamic: a step whose gradients are not all finite (the scaled values
overflowed float16's 65504) is skipped, every variable and optimizer slot left as it was, and the
scale halved; after `period` finite steps in a row it is doubled. The global step counts every step
run, skipped or not. The scale and the count of finite steps are variables of the optimizer
(`variables()`): they are kept in the run's training state (a continued run keeps its scale) and out
of the model checkpoints, which stay classic.
"""
from facenet_tf.tf_setup import configure

tf = configure()  # TensorFlow set up for TF1 graphs (see facenet_tf.tf_setup)
tf1 = tf.compat.v1

INITIAL_SCALE = 2.0 ** 15
PERIOD = 2000           # finite steps in a row before the scale doubles


def fp32_boundary(tensor):
    """`tensor`, unchanged, through a float64 round trip that the mixed-precision rewrites do not
    cross (see the module doc): the ops that consume it stay float32."""
    return tf.cast(tf.cast(tensor, tf.float64), tf.float32, name='fp32_boundary')


def _values(gradient):
    """The dense values of a gradient (a Tensor or the values of IndexedSlices)."""
    return gradient.values if isinstance(gradient, tf.IndexedSlices) else gradient


def _map_gradient(gradient, function):
    if gradient is None:
        return None
    if isinstance(gradient, tf.IndexedSlices):
        return tf.IndexedSlices(function(gradient.values), gradient.indices, gradient.dense_shape)
    return function(gradient)


def all_finite(gradients):
    """A bool tensor: every value of every gradient (None entries ignored) is finite."""
    checks = [tf.reduce_all(tf.math.is_finite(_values(g))) for g in gradients if g is not None]
    return tf.reduce_all(tf.stack(checks)) if checks else tf.constant(True)


def finite_or_zero(gradient):
    """The gradient with its non-finite values replaced by zeros (for the histogram summaries, which
    refuse NaN, of a step the scaling skips)."""
    return _map_gradient(gradient, lambda g: tf.where(tf.math.is_finite(g), g, tf.zeros_like(g)))


class LossScaleOptimizer(tf1.train.Optimizer):
    """Wraps a tf.compat.v1 optimizer with dynamic loss scaling (see the module doc). It can itself be
    wrapped (SyncReplicasOptimizer in a cluster: the averaged gradients are checked and applied on
    the chief)."""

    def __init__(self, optimizer, initial_scale=INITIAL_SCALE, period=PERIOD, factor=2.0, name='LossScale'):
        super().__init__(use_locking=False, name=name)
        self._optimizer = optimizer
        self._period = int(period)
        self._factor = float(factor)
        with tf.control_dependencies(None), tf1.variable_scope(name):
            self.scale = tf1.get_variable('loss_scale', initializer=float(initial_scale), trainable=False,
                                          collections=[tf1.GraphKeys.GLOBAL_VARIABLES])
            self.good_steps = tf1.get_variable('good_steps', initializer=0, dtype=tf.int32, trainable=False,
                                               collections=[tf1.GraphKeys.GLOBAL_VARIABLES])

    def compute_gradients(self, loss, var_list=None, **kwargs):
        """The gradients of loss x scale, divided by the scale (float32)."""
        grads = self._optimizer.compute_gradients(loss * self.scale, var_list, **kwargs)
        inverse = 1.0 / self.scale
        return [(_map_gradient(g, lambda value: value * tf.cast(inverse, value.dtype)), v) for g, v in grads]

    def apply_gradients(self, grads_and_vars, global_step=None, name=None):
        """The wrapped optimizer's update when every gradient is finite, else only the global step;
        then the scale's update."""
        grads_and_vars = list(grads_and_vars)
        finite = all_finite([g for g, _ in grads_and_vars])

        def apply():
            with tf.control_dependencies([self._optimizer.apply_gradients(grads_and_vars, global_step, name)]):
                return tf.constant(True)

        def skip():
            if global_step is None:
                return tf.constant(False)
            with tf.control_dependencies([tf1.assign_add(global_step, tf.ones([], global_step.dtype.base_dtype))]):
                return tf.constant(False)

        applied = tf.cond(finite, apply, skip)
        with tf.control_dependencies([applied]):
            good = self.good_steps + 1
            grow = tf.logical_and(finite, good >= self._period)
            new_scale = tf.where(finite, tf.where(grow, self.scale * self._factor, self.scale),
                                 tf.maximum(self.scale / self._factor, 1.0))
            new_good = tf.where(finite, tf.where(grow, 0, good), 0)
            return tf.group(tf1.assign(self.scale, new_scale), tf1.assign(self.good_steps, new_good),
                            name=name or 'loss_scaled_update')

    def get_slot(self, var, name):
        return self._optimizer.get_slot(var, name)

    def get_slot_names(self):
        return self._optimizer.get_slot_names()

    def variables(self):
        return self._optimizer.variables() + [self.scale, self.good_steps]
