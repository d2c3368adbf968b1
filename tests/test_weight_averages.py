"""The moving averages of the weights (training/optimizers.weight_averages) are the ones
tf.train.ExponentialMovingAverage keeps: the same shadow variables, names and collections, the same
values step after step, so checkpoints and the users' variables_to_restore() stay as they were."""
import numpy as np
import tensorflow as tf

from facenet_tf.training import optimizers

tf1 = tf.compat.v1
DECAY = 0.99


def _averages(ours):
    """Shadow values of two variables over 4 updates, the variables moved before each update, with
    our weight_averages or TensorFlow's ExponentialMovingAverage; and the graph's variable names."""
    with tf.Graph().as_default():
        tf1.set_random_seed(3)
        step = tf1.train.get_or_create_global_step()
        with tf1.variable_scope('Net/Conv'):
            w = tf1.get_variable('weights', [3, 2], initializer=tf1.truncated_normal_initializer(stddev=0.5))
        b = tf1.get_variable('biases', [2], initializer=tf1.constant_initializer(0.25))
        if ours:
            update, averages = optimizers.weight_averages([w, b], DECAY, step)
            shadows = {var.op.name: average for average, var in averages.items()}
        else:
            ema = tf.train.ExponentialMovingAverage(DECAY, step)
            update = ema.apply([w, b])
            shadows = {var.op.name: ema.average(var) for var in (w, b)}
        move = tf.group(w.assign(w * 1.5 - 0.1), b.assign_add([0.5, -0.25]), step.assign_add(1))
        names = sorted(v.op.name for v in tf1.global_variables())
        averaged = sorted(v.op.name for v in tf1.get_collection(tf1.GraphKeys.MOVING_AVERAGE_VARIABLES))
        restore = sorted(tf.train.ExponentialMovingAverage(DECAY).variables_to_restore())
        values = []
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            values.append(sess.run(shadows))
            for _ in range(4):
                sess.run(move)
                sess.run(update)
                values.append(sess.run(shadows))
    return values, names, averaged, restore


def test_weight_averages_are_tensorflows_exponential_moving_averages():
    ours, theirs = _averages(True), _averages(False)
    assert ours[1] == theirs[1] == ['Net/Conv/weights', 'Net/Conv/weights/ExponentialMovingAverage', 'biases',
                                    'biases/ExponentialMovingAverage', 'global_step']
    assert ours[2] == theirs[2] == ['Net/Conv/weights', 'biases']
    assert ours[3] == theirs[3]
    for mine, reference in zip(ours[0], theirs[0]):
        for name in ('Net/Conv/weights', 'biases'):
            np.testing.assert_array_equal(mine[name], reference[name])
    # a shadow starts at its variable's initial value, then lags behind the moved variable
    np.testing.assert_array_equal(ours[0][0]['biases'], [0.25, 0.25])
    assert not np.allclose(ours[0][-1]['biases'], [0.25 + 4 * 0.5, 0.25 - 4 * 0.25])
