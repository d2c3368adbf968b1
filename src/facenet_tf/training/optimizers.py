"""The classic optimizers, loss averages, the train op with the moving averages of the weights, and
the swap that evaluates on those averages."""
import contextlib

from facenet_tf.errors import FaceNetError
from facenet_tf.model_io import AVERAGE_SUFFIX
from facenet_tf.tf_setup import configure
from facenet_tf.training.config import OPTIMIZERS  # noqa: F401 (the --optimizer choices)
from facenet_tf.training import mixed_precision, towers as towers_lib

tf = configure()  # TensorFlow set up for TF1 graphs (see facenet_tf.tf_setup)
tf1 = tf.compat.v1

NO_MOVING_AVERAGE = 'no_moving_average'     # collection of trainable variables kept out of the moving averages
HISTOGRAMS = 'write_histograms'             # collection of the bool placeholder that turns the histograms on


def make_optimizer(name, learning_rate):
    """The classic optimizers with their classic hyper-parameters."""
    if name == 'ADAGRAD':
        return tf1.train.AdagradOptimizer(learning_rate)
    if name == 'ADADELTA':
        return tf1.train.AdadeltaOptimizer(learning_rate, rho=0.9, epsilon=1e-6)
    if name == 'ADAM':
        return tf1.train.AdamOptimizer(learning_rate, beta1=0.9, beta2=0.999, epsilon=0.1)
    if name == 'RMSPROP':
        return tf1.train.RMSPropOptimizer(learning_rate, decay=0.9, momentum=0.9, epsilon=1.0)
    if name == 'MOM':
        return tf1.train.MomentumOptimizer(learning_rate, 0.9, use_nesterov=True)
    raise FaceNetError('invalid optimizer %r (choose from %s)' % (name, ', '.join(OPTIMIZERS)))


def add_loss_summaries(total_loss):
    """Moving averages (0.9) of every loss in the LOSSES collection and of the total, with summaries.
    Returns (update op, the averages' variables)."""
    loss_averages = tf.train.ExponentialMovingAverage(0.9, name='avg')
    losses = tf1.get_collection('losses')
    loss_averages_op = loss_averages.apply(losses + [total_loss])
    for loss in losses + [total_loss]:
        name = loss.op.name
        tf1.summary.scalar(name + ' (raw)', loss)
        tf1.summary.scalar(name, loss_averages.average(loss))
    return loss_averages_op, [loss_averages.average(loss) for loss in losses + [total_loss]]


def _tag(name):
    """The tag tf.summary.histogram(name, ...) gives at the top level (its name scope, made unique)."""
    with tf1.name_scope(name) as scope:
        return scope.rstrip('/')


def _add_histograms(grads, loss_scaling=False):
    """The weight and gradient histograms (classic tags) as one serialized summary in the SUMMARIES
    collection, computed inside a cond on the bool placeholder HISTOGRAMS[0] (default True): a step
    that feeds it False skips the 23 M values yet runs the same fetches, so the training step's one
    executor also serves the step that writes them (a second fetch set would mean a second executor,
    prepared again at seconds of cost on the first step it runs)."""
    entries = [(_tag(var.op.name), var, False) for var in tf1.trainable_variables()]
    entries += [(_tag(var.op.name + '/gradients'), grad, True) for grad, var in grads if grad is not None]

    def histograms():
        summaries = []
        for tag, values, is_gradient in entries:
            if is_gradient and loss_scaling:    # a skipped step's gradients are not finite; the histogram refuses them
                values = mixed_precision.finite_or_zero(values)
            summaries.append(tf.raw_ops.HistogramSummary(tag=tag, values=values))
        return tf1.summary.merge(summaries, collections=[])

    write = tf1.placeholder_with_default(True, [], name='write_histograms')
    tf1.add_to_collection(HISTOGRAMS, write)
    tf1.add_to_collection(tf1.GraphKeys.SUMMARIES, tf.cond(write, histograms, lambda: tf.constant(''),
                                                           name='histograms'))


def build_train_op(total_loss, global_step, optimizer_name, learning_rate, moving_average_decay,
                   update_gradient_vars, log_histograms=True, towers=None, optimizer_wrapper=None,
                   loss_scaling=False):
    """Classic train op: gradients after the loss averages and the batch-norm UPDATE_OPS, then the
    exponential moving averages of the trainable variables (but those in the NO_MOVING_AVERAGE
    collection, e.g. sampled class centres). With `towers` ((towers, their losses,
    their weights), see towers.py) the gradients are each tower's, averaged; `optimizer_wrapper`
    (e.g. the distributed runtime's synchronous replicas) wraps the classic optimizer;
    `loss_scaling` (--precision fp16) puts dynamic loss scaling between the two (mixed_precision.py).

    Returns (train_op, saved, averages): the variables a checkpoint holds (weights, batch-norm
    statistics and their moving averages: every global variable but the optimizer's slots, the step
    counter and the loss averages) and {moving average: variable}."""
    loss_averages_op, loss_average_vars = add_loss_summaries(total_loss)
    update_ops = tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)
    variables = [v for v in update_gradient_vars if v.dtype.base_dtype.is_floating]
    opt = make_optimizer(optimizer_name, learning_rate)
    if loss_scaling:
        opt = mixed_precision.LossScaleOptimizer(opt)
    with tf.control_dependencies([loss_averages_op] + update_ops):
        if optimizer_wrapper is not None:
            opt = optimizer_wrapper(opt)
        if towers is None:
            grads = opt.compute_gradients(total_loss, variables)
        else:
            grads = towers_lib.tower_gradients(opt, *towers, variables)
    apply_gradient_op = opt.apply_gradients(grads, global_step=global_step)
    if log_histograms:
        _add_histograms(grads, loss_scaling)
    unaveraged = {v.ref() for v in tf1.get_collection(NO_MOVING_AVERAGE)}
    with tf.control_dependencies([apply_gradient_op]):
        variables_averages_op, averages = weight_averages(
            [v for v in tf1.trainable_variables() if v.ref() not in unaveraged], moving_average_decay, global_step)
    with tf.control_dependencies([apply_gradient_op, variables_averages_op]):
        train_op = tf.no_op(name='train')
    skip = {v.ref() for v in opt.variables() + loss_average_vars + [global_step]}
    saved = [v for v in tf1.global_variables() if v.ref() not in skip]
    return train_op, saved, averages


def weight_averages(variables, decay, num_updates):
    """The exponential moving averages of `variables`, as tf.train.ExponentialMovingAverage(decay,
    num_updates).apply(variables) keeps them (the same shadows `<variable>` + model_io.AVERAGE_SUFFIX,
    initial values, decay min(decay, (1 + n) / (10 + n)) and update), built without its per-variable
    cond on whether the variable is initialized: that cond, and the graph walk TensorFlow makes
    over it to order the initializers, took about 4 of the 19 s of building the InceptionResnetV1
    training graph (docs/model_files.md). A shadow starts from its variable's initial value, which
    both initializers read in the one run of the global initializer. Returns (update op,
    {average: variable})."""
    averages = {}
    with tf.control_dependencies(None):
        for var in variables:
            with tf1.colocate_with(var), tf1.variable_scope(None, var.op.name + AVERAGE_SUFFIX):
                average = tf1.get_variable('', initializer=var.initial_value, trainable=False,
                                           collections=[tf1.GraphKeys.GLOBAL_VARIABLES])
            tf1.add_to_collection(tf1.GraphKeys.MOVING_AVERAGE_VARIABLES, var)
            averages[average] = var
    with tf1.name_scope('weight_averages'):
        steps = tf.cast(num_updates, tf.float32)
        rate = 1.0 - tf.minimum(tf.constant(decay, tf.float32), (1.0 + steps) / (10.0 + steps))
        updates = [tf1.assign_sub(average, (average - var) * rate) for average, var in averages.items()]
        return tf.group(*updates, name='update'), averages


class MovingAverageSwap(object):
    """Puts the moving averages ({average: variable}, as build_train_op returns them) in place of
    their variables for an evaluation, and the trained values back after it:

        swap = MovingAverageSwap(averages)          # while building the graph
        with swap(sess):                            # while training
            evaluate()
    """

    def __init__(self, averages):
        pairs = sorted(averages.items(), key=lambda pair: pair[1].op.name)
        self.variables = [var for _, var in pairs]
        self.values = [tf1.placeholder(var.dtype.base_dtype, var.shape) for var in self.variables]
        self.put_averages = tf.group(*[var.assign(average) for average, var in pairs])
        self.put_values = tf.group(*[var.assign(value) for var, value in zip(self.variables, self.values)])

    @contextlib.contextmanager
    def __call__(self, sess):
        values = sess.run(self.variables)
        sess.run(self.put_averages)
        try:
            yield
        finally:
            sess.run(self.put_values, dict(zip(self.values, values)))
