"""The per-epoch LFW check: verification pairs embedded through the training input pipeline (on the
moving averages of the weights if asked) and scored with the project's LFW evaluation."""
import contextlib
import os
import re
import time

import numpy as np

from facenet_tf import evaluation, pairs
from facenet_tf.training import input_pipeline
from facenet_tf.cli import UserError
from facenet_tf.files import write_atomic
from facenet_tf.progress import Progress
from facenet_tf.training.session import add_summary


class LfwCheck(object):
    """Per-epoch LFW verification with the project's evaluation code (View 1 or View 2 pairs)."""

    def __init__(self, lfw_dir, lfw_pairs, nrof_folds, distance_metric=0, subtract_mean=False):
        pair_list = pairs.read_pairs(os.path.expanduser(lfw_pairs))
        self.paths, self.actual_issame = pairs.get_paths(os.path.expanduser(lfw_dir), pair_list)
        if not self.paths:
            raise UserError('no LFW pair images found in %s for %s' % (lfw_dir, lfw_pairs))
        self.folds = pairs.pair_folds(os.path.expanduser(lfw_pairs), self.actual_issame, nrof_folds)
        self.nrof_folds = nrof_folds
        self.distance_metric = distance_metric
        self.subtract_mean = subtract_mean

    def run(self, embed, step, summary_writer=None, log_dir=None, log=print):
        """embed(paths) -> [N, D] embeddings; prints and records accuracy and VAL@FAR=1e-3."""
        start = time.time()
        emb = embed(self.paths)
        _, _, accuracy, val, val_std, far = evaluation.evaluate(
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


def trim_lfw_results(log_dir, step):
    """A run continued at global `step`: drop the lfw_result.txt lines of later steps (written by the
    killed run after its last training state), so the epochs it redoes are recorded once. The file
    is rewritten atomically with every other line's bytes as they were; a file larger than
    TRIM_LIMIT bytes is not read whole nor changed."""
    path = os.path.join(log_dir, 'lfw_result.txt')
    if not os.path.isfile(path):
        return
    with open(path, 'rb') as f:
        data = f.read(TRIM_LIMIT + 1)
    if len(data) > TRIM_LIMIT:      # not a file this run wrote (a line per epoch): left as it is
        return
    lines = data.split(b'\n')
    steps = [RESULT_STEP_RE.match(line) for line in lines]
    kept = [line for line, found in zip(lines, steps) if not (found and int(found.group(1)) > step)]
    if len(kept) != len(lines):
        write_atomic(path, b'\n'.join(kept))


TRIM_LIMIT = 1 << 24    # bytes of lfw_result.txt read to trim it (a line per epoch: ~25 bytes)
RESULT_STEP_RE = re.compile(rb'^(\d{1,18})\t')


def lfw_check_from_args(args):
    """The per-epoch LFW check the --lfw_* flags ask for, or None without --lfw_dir."""
    if not args.lfw_dir:
        return None
    return LfwCheck(args.lfw_dir, args.lfw_pairs, args.lfw_nrof_folds, args.lfw_distance_metric,
                    args.lfw_subtract_mean)


def run_lfw_check(args, sess, graph, lfw_check, batch_size, step, summary_writer, log_dir):
    """The per-epoch LFW check through the training pipeline, on the moving averages of the weights
    with --lfw_use_moving_averages (graph.average_swap). Returns (accuracy, validation rate)."""
    weights = graph.average_swap(sess) if args.lfw_use_moving_averages else contextlib.nullcontext()
    with weights:
        return lfw_check.run(lambda paths: embed_lfw(args, sess, graph, paths, batch_size), step, summary_writer,
                             log_dir)


def embed_lfw(args, sess, graph, paths, batch_size):
    """LFW embeddings through the training pipeline; with --lfw_use_flipped_images the embeddings of
    each image and of its mirror image side by side."""
    control = input_pipeline.control_flags(fixed_standardization=args.use_fixed_image_standardization)
    flips = [False, True] if args.lfw_use_flipped_images else [False]
    parts = [embed_through_pipeline(
        sess, graph.queue, graph.embeddings, graph.label_batch, paths, batch_size,
        control | (input_pipeline.FLIP if flip else 0), {graph.phase_train_placeholder: False},
        graph.batch_size_placeholder, log_label='LFW embeddings' + (' (flipped)' if flip else ''))
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
    progress = Progress(padded, log_label, 'img', interval=10.0) if log_label is not None else None
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
