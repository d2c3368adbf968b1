"""What every training script shares: optimizers, learning rate, moving averages, summaries, run
folders, restoring a pretrained model, queue runners, divergence checks and the per-epoch LFW check.

Layout of a run (classic): `<logs_base_dir>/<subdir>` holds the TensorBoard events,
`revision_info.txt`, `arguments.txt` and `lfw_result.txt`; `<models_base_dir>/<subdir>` holds
`model-<subdir>.meta` and `model-<subdir>.ckpt-<step>`; subdir is a `%Y%m%d-%H%M%S` timestamp.
"""
import contextlib
import importlib
import os
import re
import sys
import time
from datetime import datetime

import numpy as np
import tensorflow as tf

from facenet_tf import input_pipeline, model_io, run_info
from facenet_tf.cli import UserError

tf1 = tf.compat.v1

OPTIMIZERS = ('ADAGRAD', 'ADADELTA', 'ADAM', 'RMSPROP', 'MOM')
CLASSIFIER_SCOPE_PREFIX = 'Logits'


class TrainingDiverged(Exception):
    """The loss became NaN or infinite; the message says where and which checkpoint is the last good one."""


# ---------------------------------------------------------------- learning rate

def read_learning_rate_schedule(filename):
    """[(epoch, learning_rate), ...] from a schedule file: `epoch: lr` lines, '#' comments, a
    negative rate (e.g. -1) ends training at that epoch."""
    path = os.path.expanduser(filename)
    if not os.path.isfile(path):
        raise UserError('learning rate schedule file not found: %s' % filename)
    schedule = []
    with open(path, 'r') as f:
        for lineno, raw in enumerate(f, start=1):
            line = raw.split('#', 1)[0].strip()
            if not line:
                continue
            parts = line.split(':')
            try:
                if len(parts) != 2:
                    raise ValueError
                epoch = int(parts[0])
                rate = -1.0 if parts[1].strip() == '-' else float(parts[1])
            except ValueError:
                raise UserError('%s line %d: expected "epoch: learning_rate", found "%s"'
                                % (filename, lineno, raw.strip()))
            if schedule and epoch <= schedule[-1][0]:
                raise UserError('%s line %d: epochs must increase (%d after %d)'
                                % (filename, lineno, epoch, schedule[-1][0]))
            schedule.append((epoch, rate))
    if not schedule:
        raise UserError('learning rate schedule file %s holds no "epoch: learning_rate" line' % filename)
    if schedule[0][0] > 0:
        raise UserError('learning rate schedule file %s must start at epoch 0' % filename)
    return schedule


def learning_rate_for_epoch(schedule, epoch):
    """The rate of the last schedule entry whose epoch is <= epoch (negative: stop training)."""
    rate = schedule[0][1]
    for start, value in schedule:
        if start <= epoch:
            rate = value
        else:
            break
    return rate


def get_learning_rate_from_file(filename, epoch):
    """Classic name: the learning rate for `epoch` from a schedule file."""
    return learning_rate_for_epoch(read_learning_rate_schedule(filename), epoch)


def learning_rate_tensor(learning_rate_placeholder, global_step, decay_epochs, epoch_size, decay_factor):
    """Staircase exponential decay of the fed rate every decay_epochs * epoch_size steps (classic)."""
    return tf1.train.exponential_decay(learning_rate_placeholder, global_step, decay_epochs * epoch_size,
                                       decay_factor, staircase=True)


# ---------------------------------------------------------------- optimisation

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
    raise UserError('invalid optimizer %r (choose from %s)' % (name, ', '.join(OPTIMIZERS)))


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


def build_train_op(total_loss, global_step, optimizer_name, learning_rate, moving_average_decay,
                   update_gradient_vars, log_histograms=True):
    """Classic train op: gradients after the loss averages and the batch-norm UPDATE_OPS, then the
    exponential moving averages of the trainable variables.

    Returns (train_op, saved, averages): the variables a checkpoint holds (weights, batch-norm
    statistics and their moving averages: every global variable but the optimizer's slots, the step
    counter and the loss averages) and {moving average: variable}."""
    loss_averages_op, loss_average_vars = add_loss_summaries(total_loss)
    update_ops = tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)
    variables = [v for v in update_gradient_vars if v.dtype.base_dtype.is_floating]
    with tf.control_dependencies([loss_averages_op] + update_ops):
        opt = make_optimizer(optimizer_name, learning_rate)
        grads = opt.compute_gradients(total_loss, variables)
    apply_gradient_op = opt.apply_gradients(grads, global_step=global_step)
    if log_histograms:
        for var in tf1.trainable_variables():
            tf1.summary.histogram(var.op.name, var)
        for grad, var in grads:
            if grad is not None:
                tf1.summary.histogram(var.op.name + '/gradients', grad)
    ema = tf.train.ExponentialMovingAverage(moving_average_decay, global_step)
    with tf.control_dependencies([apply_gradient_op]):
        variables_averages_op = ema.apply(tf1.trainable_variables())
    with tf.control_dependencies([apply_gradient_op, variables_averages_op]):
        train_op = tf.no_op(name='train')
    skip = {v.ref() for v in opt.variables() + loss_average_vars + [global_step]}
    saved = [v for v in tf1.global_variables() if v.ref() not in skip]
    averages = {}
    for var in tf1.trainable_variables():
        if ema.average(var) is not None:
            averages[ema.average(var)] = var
    return train_op, saved, averages


def add_run_ops(args, g):
    """What both training graphs add after the train op: the Saver of g['saved'] (the last 3
    checkpoints kept), the merged summaries, the op closing the input queue and, with
    --lfw_use_moving_averages, the MovingAverageSwap of g['averages']."""
    g['saver'] = tf1.train.Saver(g['saved'], max_to_keep=3)
    g['summary_op'] = tf1.summary.merge_all()
    g['close_queue'] = g['queue'].queue.close(cancel_pending_enqueues=True)
    if args.lfw_use_moving_averages:
        g['average_swap'] = MovingAverageSwap(g['averages'])


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


def train_control(args):
    """The pipeline control word of training images from the augmentation flags."""
    return input_pipeline.control_flags(args.random_crop, args.random_flip, args.random_rotate,
                                        args.use_fixed_image_standardization, random_erase=args.random_erase)


# ---------------------------------------------------------------- run folders and records

def create_run_dirs(logs_base_dir, models_base_dir, subdir=None):
    """(subdir, log_dir, model_dir), both folders created; subdir defaults to a timestamp."""
    subdir = subdir or datetime.strftime(datetime.now(), '%Y%m%d-%H%M%S')
    log_dir = os.path.join(os.path.expanduser(logs_base_dir), subdir)
    model_dir = os.path.join(os.path.expanduser(models_base_dir), subdir)
    for folder in (log_dir, model_dir):
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as e:
            raise UserError('cannot create folder %s: %s' % (folder, e.strerror or e))
    return subdir, log_dir, model_dir


def add_summary(summary_writer, step, **values):
    """Scalar summaries from keyword arguments (tag = name with '__' read as '/')."""
    summary = tf1.Summary()
    for tag, value in values.items():
        summary.value.add(tag=tag.replace('__', '/'), simple_value=float(value))
    summary_writer.add_summary(summary, step)


# ---------------------------------------------------------------- pretrained models

def checkpoint_prefix(pretrained_model):
    """A checkpoint prefix from either a prefix (`.../model-X.ckpt-N`) or a model folder."""
    path = os.path.expanduser(pretrained_model)
    if os.path.isdir(path):
        _, ckpt_file = model_io.get_model_filenames(path)
        return os.path.join(path, ckpt_file)
    if os.path.exists(path + '.index') or os.path.isfile(path):
        return path
    raise UserError('pretrained model not found: %s (give a model folder or a checkpoint prefix '
                    'such as .../model-20180402-114759.ckpt-275)' % pretrained_model)


def restore_pretrained(sess, pretrained_model, var_list, averages=None, log=print):
    """Restore every variable of var_list that the checkpoint holds with the same shape; skip the
    classifier (`Logits*`) and mismatched shapes with one line each. Moving averages the checkpoint
    lacks start from their restored variable. Returns the number of variables restored."""
    prefix = checkpoint_prefix(pretrained_model)
    try:
        shapes = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    except (tf.errors.OpError, ValueError) as e:
        raise UserError('cannot read checkpoint %s: %s' % (prefix, str(e).strip().splitlines()[0]))
    restore, missing = [], []
    for var in var_list:
        name = var.op.name
        if name.split('/')[0].startswith(CLASSIFIER_SCOPE_PREFIX):
            log('pretrained model: skipping %s (classifier layer)' % name)
        elif name not in shapes:
            missing.append(name)
        elif list(shapes[name]) != var.shape.as_list():
            log('pretrained model: skipping %s (shape %s in the checkpoint, %s here)'
                % (name, list(shapes[name]), var.shape.as_list()))
        else:
            restore.append(var)
    if not restore:
        raise UserError('pretrained model %s holds none of this network\'s variables' % pretrained_model)
    tf1.train.Saver(restore).restore(sess, prefix)
    restored = {v.op.name for v in restore}
    copies = [shadow.assign(var) for shadow, var in (averages or {}).items()
              if shadow.op.name in missing and var.op.name in restored]
    if copies:
        sess.run(copies)
    log('pretrained model: restored %d variables from %s (%d not in it, %d moving averages set from '
        'their variables)' % (len(restore), prefix, len(missing), len(copies)))
    return len(restore)


# ---------------------------------------------------------------- running

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


def input_error(coord, error):
    """A one-line UserError for a failed pipeline run (an unreadable image, usually)."""
    cause = error
    if coord is not None and coord.should_stop():
        try:
            coord.raise_requested_exception()
        except Exception as e:  # the thread's own error says which op failed
            cause = e
    message = getattr(cause, 'message', None) or str(cause)
    lines = [line.strip() for line in message.splitlines()
             if line.strip() and not line.startswith('Graph execution error')]
    return UserError('input pipeline failed: %s' % (lines[0] if lines else type(cause).__name__))


def is_non_finite_summary_error(error):
    """True for the error a histogram summary raises on NaN or infinite values (a diverged run)."""
    return re.search(r'(nan|infinity) in (summary )?histogram', str(error), re.IGNORECASE) is not None


def check_loss(value, epoch, step, last_checkpoint):
    """Raise TrainingDiverged when the loss is NaN or infinite."""
    if not np.isfinite(value):
        raise TrainingDiverged('the loss became %s at epoch %d, step %d: training stopped (try a lower '
                               'learning rate); the last good checkpoint is %s'
                               % (value, epoch, step, last_checkpoint or 'none (no epoch completed)'))


def run_train_step(sess, g, names, feed, epoch, summary_writer, with_summary):
    """One training step: fetches g[name] for each of `names` (which hold 'loss' and 'global_step') and,
    when asked, the merged summary, written to summary_writer. A NaN or infinite loss, also when it
    makes a histogram summary fail first, raises TrainingDiverged. Returns {name: value}."""
    fetches = [g[n] for n in names] + ([g['summary_op']] if with_summary else [])
    try:
        out = sess.run(fetches, feed_dict=feed)
    except tf.errors.InvalidArgumentError as e:
        if not is_non_finite_summary_error(e):
            raise
        check_loss(float('nan'), epoch, sess.run(g['global_step']), g.get('last_checkpoint'))
    values = dict(zip(names, out))
    check_loss(values['loss'], epoch, values['global_step'], g.get('last_checkpoint'))
    if with_summary:
        summary_writer.add_summary(out[-1], values['global_step'])
    return values


def save_checkpoint(sess, saver, summary_writer, model_dir, subdir, step):
    """Save `model-<subdir>.ckpt-<step>` (and the .meta once); returns the checkpoint prefix."""
    model_io.save_variables_and_metagraph(sess, saver, summary_writer, model_dir, subdir, step)
    return os.path.join(model_dir, 'model-%s.ckpt-%d' % (subdir, step))


class StepLog(object):
    """Progress lines of an epoch: epoch, step, loss, images/s and the epoch's ETA."""

    def __init__(self, epoch, epoch_size, interval=5.0, stream=None):
        self.epoch = epoch
        self.epoch_size = epoch_size
        self.interval = interval
        self.stream = stream or sys.stdout
        self.start = time.time()
        self.steps = 0
        self.images = 0
        self.losses = []
        self._last = 0.0

    def update(self, step, batch, images, loss, learning_rate):
        self.steps = batch
        self.images += images
        self.losses.append(loss)
        now = time.time()
        if now - self._last >= self.interval or batch >= self.epoch_size or batch == 1:
            self._last = now
            elapsed = now - self.start
            rate = self.images / elapsed if elapsed > 0 else 0.0
            eta = elapsed / batch * (self.epoch_size - batch) if batch else 0.0
            self.stream.write('Epoch: [%d][%d/%d]\tstep %d\tloss %.4f\tlr %g\t%.1f img/s\tETA %d:%02d\n'
                              % (self.epoch, batch, self.epoch_size, step, loss, learning_rate, rate,
                                 eta // 60, eta % 60))
            self.stream.flush()

    def summary(self):
        elapsed = time.time() - self.start
        return ('Epoch %d: %d steps, %d images in %.1f s (%.1f img/s), mean loss %.4f'
                % (self.epoch, self.steps, self.images, elapsed, self.images / max(elapsed, 1e-9),
                   float(np.mean(self.losses)) if self.losses else float('nan')))


# ---------------------------------------------------------------- LFW check

class LfwCheck(object):
    """Per-epoch LFW verification with the project's evaluation code (View 1 or View 2 pairs)."""

    def __init__(self, lfw_dir, lfw_pairs, nrof_folds, distance_metric=0, subtract_mean=False):
        import lfw
        self.lfw = lfw
        pairs = lfw.read_pairs(os.path.expanduser(lfw_pairs))
        self.paths, self.actual_issame = lfw.get_paths(os.path.expanduser(lfw_dir), pairs)
        if not self.paths:
            raise UserError('no LFW pair images found in %s for %s' % (lfw_dir, lfw_pairs))
        self.folds = lfw.pair_folds(os.path.expanduser(lfw_pairs), self.actual_issame, nrof_folds)
        self.nrof_folds = nrof_folds
        self.distance_metric = distance_metric
        self.subtract_mean = subtract_mean

    def run(self, embed, step, summary_writer=None, log_dir=None, log=print):
        """embed(paths) -> [N, D] embeddings; prints and records accuracy and VAL@FAR=1e-3."""
        start = time.time()
        emb = embed(self.paths)
        _, _, accuracy, val, val_std, far = self.lfw.evaluate(
            emb, self.actual_issame, nrof_folds=self.nrof_folds, distance_metric=self.distance_metric,
            subtract_mean=self.subtract_mean, folds=self.folds)
        elapsed = time.time() - start
        log('LFW: accuracy %.5f+-%.5f, validation rate %.5f+-%.5f @ FAR=%.5f (%d pairs, %.1f s)'
            % (np.mean(accuracy), np.std(accuracy), val, val_std, far, len(self.actual_issame), elapsed))
        if summary_writer is not None:
            add_summary(summary_writer, step, lfw__accuracy=np.mean(accuracy), lfw__val_rate=val,
                        time__lfw=elapsed)
        if log_dir is not None:
            with open(os.path.join(log_dir, 'lfw_result.txt'), 'a') as f:
                f.write('%d\t%.5f\t%.5f\n' % (step, np.mean(accuracy), val))
        return float(np.mean(accuracy)), float(val)


def lfw_check_from_args(args):
    """The per-epoch LFW check the --lfw_* flags ask for, or None without --lfw_dir."""
    if not args.lfw_dir:
        return None
    return LfwCheck(args.lfw_dir, args.lfw_pairs, args.lfw_nrof_folds, args.lfw_distance_metric,
                    args.lfw_subtract_mean)


def run_lfw_check(args, sess, g, lfw_check, batch_size, step, summary_writer, log_dir):
    """The per-epoch LFW check through the training pipeline, on the moving averages of the weights
    with --lfw_use_moving_averages (g['average_swap']). Returns (accuracy, validation rate)."""
    weights = g['average_swap'](sess) if args.lfw_use_moving_averages else contextlib.nullcontext()
    with weights:
        return lfw_check.run(lambda paths: embed_lfw(args, sess, g, paths, batch_size), step, summary_writer,
                             log_dir)


def embed_lfw(args, sess, g, paths, batch_size):
    """LFW embeddings through the training pipeline; with --lfw_use_flipped_images the embeddings of
    each image and of its mirror image side by side."""
    control = input_pipeline.control_flags(fixed_standardization=args.use_fixed_image_standardization)
    flips = [False, True] if args.lfw_use_flipped_images else [False]
    parts = [embed_through_pipeline(
        sess, g['queue'], g['embeddings'], g['label_batch'], paths, batch_size,
        control | (input_pipeline.FLIP if flip else 0), {g['phase_train_placeholder']: False},
        g['batch_size_placeholder'], log_label='LFW embeddings' + (' (flipped)' if flip else ''))
        for flip in flips]
    return np.concatenate(parts, axis=1)


def embed_through_pipeline(sess, input_queue, embeddings, label_batch, paths, batch_size, control,
                           feed_dict, batch_size_placeholder, log_label=None):
    """Embeddings of `paths` (in order) computed through the training input pipeline: the paths are
    enqueued in groups (padded by repeating the last path), labels carry each image's index."""
    group = input_queue.queue.shapes[0].as_list()[0]
    n = len(paths)
    padded = int(np.ceil(n / float(group))) * group
    input_pipeline.enqueue(sess, input_queue, list(paths) + [paths[-1]] * (padded - n), np.arange(padded), control)
    dim = embeddings.shape.as_list()[-1]
    result = np.zeros((padded, dim), np.float32)
    done = 0
    progress = None
    if log_label is not None:
        from facenet_tf.progress import Progress
        progress = Progress(padded, log_label, 'img', interval=10.0)
    while done < padded:
        size = min(batch_size, padded - done)
        feed = dict(feed_dict)
        feed[batch_size_placeholder] = size
        emb, lab = sess.run([embeddings, label_batch], feed_dict=feed)
        result[lab] = emb
        done += size
        if progress is not None:
            progress.update(size)
    return result[:n]


def add_common_arguments(parser, max_nrof_epochs, batch_size_extra=''):
    """The flags both training scripts share, with the classic names and defaults."""
    parser.add_argument('--logs_base_dir', type=str, default='~/logs/facenet',
                        help='Directory where to write event logs.')
    parser.add_argument('--models_base_dir', type=str, default='~/models/facenet',
                        help='Directory where to write trained models and checkpoints.')
    parser.add_argument('--gpu_memory_fraction', type=float, default=1.0,
                        help='Upper bound on the amount of GPU memory used by the process (no effect on CPU).')
    parser.add_argument('--pretrained_model', type=str,
                        help='Model folder or checkpoint prefix to start from (Logits* and mismatched shapes skipped).')
    parser.add_argument('--data_dir', type=str, default='~/datasets/casia/casia_maxpy_mtcnnalign_182_160',
                        help='Path to the data directory with aligned face patches (several joined by ":"), '
                        'or a folder holding train.rec + train.idx.')
    parser.add_argument('--model_def', type=str, default='models.inception_resnet_v1',
                        help='Model definition module (e.g. models.inception_resnet_v1).')
    parser.add_argument('--max_nrof_epochs', type=int, default=max_nrof_epochs, help='Number of epochs to run.')
    parser.add_argument('--batch_size', type=int, default=90, help='Images per batch%s.' % batch_size_extra)
    parser.add_argument('--image_size', type=int, default=160, help='Image size (height, width) in pixels.')
    parser.add_argument('--epoch_size', type=int, default=1000, help='Training steps per epoch.')
    parser.add_argument('--embedding_size', type=int, default=128, help='Dimensionality of the embedding.')
    parser.add_argument('--random_crop', action='store_true',
                        help='Random crops of image_size from larger training images (else a central crop/pad).')
    parser.add_argument('--random_flip', action='store_true', help='Random horizontal flips of training images.')
    parser.add_argument('--random_rotate', action='store_true',
                        help='Random rotations (+-10 degrees) of training images.')
    parser.add_argument('--random_erase', action='store_true',
                        help='Random erasing: half of the training images get a random rectangle of noise.')
    parser.add_argument('--use_fixed_image_standardization', action='store_true',
                        help='(x - 127.5) / 128 instead of per-image standardization.')
    parser.add_argument('--keep_probability', type=float, default=1.0,
                        help='Keep probability of dropout for the fully connected layer(s).')
    parser.add_argument('--weight_decay', type=float, default=0.0, help='L2 weight regularization.')
    parser.add_argument('--optimizer', type=str, choices=list(OPTIMIZERS), default='ADAGRAD',
                        help='The optimization algorithm to use.')
    parser.add_argument('--learning_rate', type=float, default=0.1,
                        help='Initial learning rate; <= 0 reads --learning_rate_schedule_file.')
    parser.add_argument('--learning_rate_decay_epochs', type=int, default=100,
                        help='Number of epochs between learning rate decays.')
    parser.add_argument('--learning_rate_decay_factor', type=float, default=1.0, help='Learning rate decay factor.')
    parser.add_argument('--moving_average_decay', type=float, default=0.9999,
                        help='Exponential decay for tracking of training parameters.')
    parser.add_argument('--seed', type=int, default=666, help='Random seed.')
    parser.add_argument('--nrof_preprocess_threads', type=int, default=4, help='Image preprocessing threads.')
    parser.add_argument('--learning_rate_schedule_file', type=str, default='data/learning_rate_schedule.txt',
                        help='File of "epoch: learning_rate" lines, used when --learning_rate <= 0.')
    parser.add_argument('--lfw_pairs', type=str, default='data/pairs.txt',
                        help='The LFW pairs file (View 2 pairs.txt or View 1 pairsDevTest.txt).')
    parser.add_argument('--lfw_dir', type=str, default='', help='Path to the aligned LFW face patches.')
    parser.add_argument('--lfw_nrof_folds', type=int, default=10, help='Number of folds for the LFW check.')
    parser.add_argument('--lfw_distance_metric', type=int, default=0, choices=[0, 1],
                        help='LFW distance: 0 squared Euclidean, 1 cosine (angular).')
    parser.add_argument('--lfw_use_flipped_images', action='store_true',
                        help='Concatenate the embeddings of each LFW image and of its mirror image.')
    parser.add_argument('--lfw_subtract_mean', action='store_true',
                        help='Subtract the feature mean before computing LFW distances.')
    parser.add_argument('--lfw_use_moving_averages', action='store_true',
                        help='Run the LFW check with the moving averages of the weights (--moving_average_decay) '
                        'instead of their current values.')
    return parser


def import_network(model_def):
    """The network module named by --model_def (e.g. models.inception_resnet_v1)."""
    try:
        return importlib.import_module(model_def)
    except ImportError as e:
        raise UserError('cannot import the model definition %s: %s' % (model_def, e))


def schedule_from_args(args):
    """The learning-rate schedule when --learning_rate <= 0 asks for the schedule file, else None."""
    if args.learning_rate <= 0.0:
        return read_learning_rate_schedule(args.learning_rate_schedule_file)
    return None


def start_run(args, script_file):
    """Create the run's log and model folders, print them, and record how the run was started."""
    subdir, log_dir, model_dir = create_run_dirs(args.logs_base_dir, args.models_base_dir)
    print('Model directory: %s' % model_dir)
    print('Log directory: %s' % log_dir)
    run_info.store_revision_info(os.path.dirname(os.path.abspath(script_file)), log_dir, ' '.join(sys.argv))
    run_info.write_arguments_to_file(args, os.path.join(log_dir, 'arguments.txt'))
    return subdir, log_dir, model_dir


@contextlib.contextmanager
def training_session(args, g, log_dir):
    """A session with the variables initialised (or restored from --pretrained_model), a summary
    writer and the queue runners started; everything is stopped and closed on exit."""
    config = tf1.ConfigProto(gpu_options=tf1.GPUOptions(per_process_gpu_memory_fraction=args.gpu_memory_fraction))
    with tf1.Session(config=config) as sess:
        sess.run(tf1.global_variables_initializer())
        sess.run(tf1.local_variables_initializer())
        if args.pretrained_model:
            restore_pretrained(sess, args.pretrained_model, g['saved'], g['averages'])
        summary_writer = tf1.summary.FileWriter(log_dir, sess.graph)
        coord, threads = start_queue_runners(sess)
        try:
            yield sess, summary_writer, coord
        finally:
            summary_writer.close()
            stop_queue_runners(sess, coord, threads, [g['close_queue']])


def build_network_graph(args, network, group_size, queue_capacity=100000, read_file=tf.io.read_file):
    """The part both training graphs share: step counter, placeholders, the input queue and pipeline,
    the classic tensor names (`image_batch`, `input`, `label_batch`, `phase_train`, `embeddings`),
    the network and the learning rate. Returns a dict the scripts extend with their loss and train op."""
    tf1.set_random_seed(args.seed)
    g = {}
    g['global_step'] = tf1.Variable(0, trainable=False, name='global_step')
    g['learning_rate_placeholder'] = tf1.placeholder(tf.float32, name='learning_rate')
    g['batch_size_placeholder'] = tf1.placeholder(tf.int32, name='batch_size')
    g['phase_train_placeholder'] = tf1.placeholder(tf.bool, name='phase_train')
    g['queue'] = input_pipeline.make_input_queue(group_size, capacity=queue_capacity)
    image_batch, label_batch = input_pipeline.create_input_pipeline(
        g['queue'], args.image_size, args.nrof_preprocess_threads, g['batch_size_placeholder'],
        capacity_images=4 * args.nrof_preprocess_threads * args.batch_size, read_file=read_file)
    image_batch = tf.identity(image_batch, 'image_batch')
    image_batch = tf.identity(image_batch, 'input')
    g['label_batch'] = tf.identity(label_batch, 'label_batch')
    g['prelogits'], _ = network.inference(image_batch, args.keep_probability,
                                          phase_train=g['phase_train_placeholder'],
                                          bottleneck_layer_size=args.embedding_size,
                                          weight_decay=args.weight_decay)
    g['embeddings'] = tf.nn.l2_normalize(g['prelogits'], 1, 1e-10, name='embeddings')
    g['learning_rate'] = learning_rate_tensor(g['learning_rate_placeholder'], g['global_step'],
                                              args.learning_rate_decay_epochs, args.epoch_size,
                                              args.learning_rate_decay_factor)
    return g
