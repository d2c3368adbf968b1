"""Running a training graph: the session with its queue runners, one training step with the
divergence check, scalar summaries, and the one-line error of a failed input pipeline."""
import contextlib
import re

import numpy as np

from facenet_tf.errors import FaceNetError
from facenet_tf.tf_setup import configure, session_config
from facenet_tf.training import distributed
from facenet_tf.training.checkpoints import restore_pretrained, restore_state
from facenet_tf.training.towers import session_device_count

tf = configure()  # TensorFlow set up for TF1 graphs (see facenet_tf.tf_setup)
tf1 = tf.compat.v1


class TrainingDiverged(Exception):
    """The loss became NaN or infinite; the message says where and which checkpoint is the last good one."""


def start_queue_runners(sess):
    """Start the input pipeline's threads; returns (coord, threads)."""
    coord = tf.train.Coordinator()
    threads = tf1.train.start_queue_runners(coord=coord, sess=sess)
    return coord, threads


def stop_queue_runners(sess, coord, threads, close_ops=()):
    """Stop the pipeline threads: close the queues (cancelling pending enqueues) and join briefly."""
    coord.request_stop()
    for op in close_ops:
        try:
            sess.run(op)
        except tf.errors.OpError:
            pass
    try:
        coord.join(threads, stop_grace_period_secs=5)
    except (RuntimeError, tf.errors.OpError):
        pass


def session_config_of(config, device_count=None):
    """The session config of a run: --precision (the mixed-precision rewrite), --gpu_memory_fraction,
    --allow_growth, the towers' devices."""
    return session_config(config.precision, gpu_memory_fraction=config.gpu_memory_fraction,
                          allow_growth=config.allow_growth, device_count=device_count)


@contextlib.contextmanager
def training_session(config, graph, log_dir, state=None):
    """A session with the variables initialised, then restored from the run's training state `state`
    (a prefix, see checkpoints.latest_state: a run continued with --resume) or else from
    --pretrained_model, a summary writer (a continued run's events start with a SessionLog START at
    its global step, so TensorBoard drops the events a killed run wrote after its last state) and the
    queue runners started; everything is stopped and closed on exit. In a cluster (graph.cluster)
    the session is on this worker's server (distributed.create_session; the chief restores `state`)
    and only the chief writes summaries. Yields (sess, summary_writer, coord)."""
    session = session_config_of(config, session_device_count(config.num_gpus))
    coord = tf.train.Coordinator()
    update_threads = []     # the chief's queue runner of synchronous updates
    is_chief = graph.cluster is None or graph.cluster.is_chief
    if graph.cluster is None:
        sess = tf1.Session(config=session)
        sess.run(tf1.global_variables_initializer())
        sess.run(tf1.local_variables_initializer())
    else:
        server = distributed.start_server(graph.cluster, session)
        sess, update_threads = distributed.create_session(graph.cluster, server, graph, state, session,
                                                          config.cluster_wait_timeout)
    with contextlib.ExitStack() as stack:
        stack.callback(lambda: [thread.join(5) for thread in update_threads])
        stack.enter_context(sess)
        if state is not None and graph.cluster is None:
            restore_state(sess, graph.state_saver, state, tf1.global_variables())
        if state is not None and is_chief:
            print('Continuing the run from its training state %s (global step %d)'
                  % (state, sess.run(graph.global_step)))
        elif config.pretrained_model and is_chief:
            restore_pretrained(sess, config.pretrained_model, graph.saved, graph.averages)
        if is_chief:
            summary_writer = tf1.summary.FileWriter(log_dir, sess.graph)
            if state is not None:
                summary_writer.add_session_log(tf1.SessionLog(status=tf1.SessionLog.START),
                                               int(sess.run(graph.global_step)))
        else:
            summary_writer = distributed.NoSummaries()
        threads = tf1.train.start_queue_runners(coord=coord, sess=sess)
        try:
            yield sess, summary_writer, coord
        finally:
            summary_writer.close()
            stop_queue_runners(sess, coord, threads, [graph.close_queue])


def input_error(coord, error):
    """A one-line FaceNetError for a failed pipeline run (an unreadable image, usually)."""
    cause = error
    if coord is not None and coord.should_stop():
        try:
            coord.raise_requested_exception()
        except Exception as e:  # the thread's own error says which op failed
            cause = e
    message = getattr(cause, "message", None) or str(cause)
    lines = [line.strip() for line in message.splitlines()
             if line.strip() and not line.startswith('Graph execution error')]
    return FaceNetError('input pipeline failed: %s' % (lines[0] if lines else type(cause).__name__))


def add_summary(summary_writer, step, **values):
    """Scalar summaries from keyword arguments (tag = name with '__' read as '/')."""
    summary = tf1.Summary()
    for tag, value in values.items():
        summary.value.add(tag=tag.replace('__', '/'), simple_value=float(value))
    summary_writer.add_summary(summary, step)


def is_non_finite_summary_error(error):
    """True for the error a histogram summary raises on NaN or infinite values (a diverged run)."""
    return re.search(r'(nan|infinity) in (summary )?histogram', str(error), re.IGNORECASE) is not None


def check_loss(value, epoch, step, last_checkpoint):
    """Raise TrainingDiverged when the loss is NaN or infinite."""
    if not np.isfinite(value):
        raise TrainingDiverged('the loss became %s at epoch %d, step %d: training stopped (try a lower '
                               'learning rate); the last good checkpoint is %s'
                               % (value, epoch, step, last_checkpoint or 'none (no epoch completed)'))


def run_train_step(sess, graph, names, feed, epoch, summary_writer, with_summary, last_checkpoint=None,
                   options=None):
    """One training step: fetches the graph's attribute of each of `names` (which hold 'loss' and
    'global_step') and, when asked, the merged summary, written to summary_writer. A NaN or infinite
    loss, also when it makes a histogram summary fail first, raises TrainingDiverged. `options`:
    the RunOptions of the step (a timeout in a cluster). Returns {name: value}."""
    fetches = [getattr(graph, n) for n in names] + ([graph.summary_op] if with_summary else [])
    try:
        out = sess.run(fetches, feed_dict=feed, options=options)
    except tf.errors.InvalidArgumentError as e:
        if not is_non_finite_summary_error(e):
            raise
        check_loss(float('nan'), epoch, sess.run(graph.global_step), last_checkpoint)
    values = dict(zip(names, out))
    check_loss(values['loss'], epoch, values['global_step'], last_checkpoint)
    if with_summary:
        summary_writer.add_summary(out[-1], values['global_step'])
    return values
