"""The per-epoch verification check: one or more targets (the classic --lfw_dir/--lfw_pairs one
first, then each --val_set), each a verification set (verification_sets.load_verification_set: a
pairs file + aligned folder, or a .bin) embedded through the training input pipeline (on the moving
averages of the weights if asked) and scored with the project's evaluation.

Each target has its own log line, its TensorBoard summaries `<name>/accuracy`, `<name>/val_rate`,
`time/<name>` and its `<log_dir>/<name>_result.txt` (`step accuracy val` lines; the classic target
is named `lfw`). The first target's result is the one the run keeps the best checkpoint by (and
train_softmax's stat.h5 records as lfw_accuracy / lfw_valrate)."""
import contextlib
import os
import re
import time

import numpy as np

from facenet_tf import evaluation
from facenet_tf.errors import FaceNetError
from facenet_tf.files import write_atomic
from facenet_tf.progress import Progress
from facenet_tf.training import input_pipeline
from facenet_tf.training.session import add_summary
from facenet_tf.verification_sets import load_verification_set

LFW = 'lfw'                                             # the name of the --lfw_dir target
NAME_RE = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.-]{0,63}')   # a file name and a summary tag prefix
TRIM_LIMIT = 1 << 24    # bytes of a result file read to trim it (a line per epoch: ~25 bytes)
RESULT_STEP_RE = re.compile(rb'^(\d{1,18})\t')


class VerificationCheck(object):
    """One target of the check: a VerificationSet scored with the project's evaluation code."""

    def __init__(self, vset, nrof_folds, distance_metric=0, subtract_mean=False):
        self.set = vset
        self.nrof_folds = nrof_folds
        self.distance_metric = distance_metric
        self.subtract_mean = subtract_mean

    @property
    def name(self):
        return self.set.name

    def run(self, embed, step, summary_writer=None, log_dir=None, log=print):
        """embed(items) -> [len(items), D] embeddings of the set's distinct images; logs and records
        accuracy and VAL@FAR=1e-3; returns (accuracy, validation rate)."""
        start = time.time()
        emb = embed(self.set.items)[self.set.where]
        _, _, accuracy, val, val_std, far = evaluation.evaluate(
            emb, self.set.issame, nrof_folds=self.nrof_folds, distance_metric=self.distance_metric,
            subtract_mean=self.subtract_mean, folds=self.set.folds)
        elapsed = time.time() - start
        log('%s: accuracy %.5f+-%.5f, validation rate %.5f+-%.5f @ FAR=%.5f (%d pairs, %.1f s)'
            % ('LFW' if self.name == LFW else self.name, np.mean(accuracy), np.std(accuracy), val, val_std, far,
               self.set.issame.size, elapsed))
        if summary_writer is not None:
            add_summary(summary_writer, step, **{self.name + '__accuracy': np.mean(accuracy),
                                                 self.name + '__val_rate': val, 'time__' + self.name: elapsed})
        if log_dir is not None:
            with open(result_file(log_dir, self.name), 'a') as f:
                f.write('%d\t%.5f\t%.5f\n' % (step, np.mean(accuracy), val))
        return float(np.mean(accuracy)), float(val)


class LfwCheck(VerificationCheck):
    """The classic per-epoch LFW check: a pairs file (View 1 or View 2) read against an aligned folder."""

    def __init__(self, lfw_dir, lfw_pairs, nrof_folds, distance_metric=0, subtract_mean=False):
        VerificationCheck.__init__(self, load_verification_set(lfw_dir, lfw_pairs, nrof_folds, LFW), nrof_folds,
                                   distance_metric, subtract_mean)


def result_file(log_dir, name):
    return os.path.join(log_dir, '%s_result.txt' % name)


def parse_target(spec):
    """(name, path, pairs file or None) of a --val_set value: NAME=FILE.bin, or NAME=FOLDER,PAIRS_FILE
    for aligned faces read against a pairs file."""
    name, sep, source = spec.partition('=')
    if not sep or not NAME_RE.fullmatch(name) or not source:
        raise FaceNetError('--val_set %r: expected NAME=FILE.bin or NAME=FOLDER,PAIRS_FILE (NAME: letters, '
                           'digits, _ . -, up to 64)' % spec[:80])
    path, comma, pairs_file = source.rpartition(',')
    if comma and not os.path.isfile(os.path.expanduser(source)):
        return name, path, pairs_file
    return name, source, None


def target_sources(config):
    """[(name, path, pairs file or None)] of the check's targets: --lfw_dir (with --lfw_pairs) first,
    then each --val_set; the names must differ."""
    targets = [(LFW, config.lfw_dir, config.lfw_pairs)] if config.lfw_dir else []
    targets += [parse_target(spec) for spec in config.val_set or []]
    names = [name for name, _, _ in targets]
    for name in names:
        if names.count(name) > 1:
            hint = ' (lfw is the --lfw_dir one)' if name == LFW and config.lfw_dir else ''
            raise FaceNetError('the check targets must have different names: %s is given %d times%s'
                               % (name, names.count(name), hint))
    return targets


def checks_from_config(config):
    """The VerificationChecks of the targets (loaded now, so a bad set fails before training)."""
    checks = []
    for name, path, pairs_file in target_sources(config):
        if pairs_file is None and not os.path.isfile(os.path.expanduser(path)) and name != LFW:
            raise FaceNetError('--val_set %s=%s: not a .bin file (a folder needs its pairs file: '
                               'NAME=FOLDER,PAIRS_FILE)' % (name, path))
        vset = load_verification_set(path, pairs_file, config.lfw_nrof_folds, name)
        checks.append(VerificationCheck(vset, config.lfw_nrof_folds, config.lfw_distance_metric,
                                        config.lfw_subtract_mean))
    return checks


def reads_encoded_images(config):
    """True when a target is a .bin file, whose encoded images the input pipeline then takes too."""
    return any(os.path.isfile(os.path.expanduser(path)) for _, path, _ in target_sources(config))


def pipeline_reader(config, records=None):
    """read_file of the training pipeline: records (input_pipeline.record_file_reader) and, when a
    check target is a .bin, encoded images queued by embed_lfw."""
    return input_pipeline.file_reader(records, encoded=reads_encoded_images(config))


def trim_lfw_results(log_dir, step, names=(LFW,)):
    """A run continued at global `step`: drop the result-file lines of later steps (written by the
    killed run after its last training state), so the epochs it redoes are recorded once. Each file
    is rewritten atomically with every other line's bytes as they were; a file larger than
    TRIM_LIMIT bytes is not read whole nor changed."""
    for name in names:
        path = result_file(log_dir, name)
        if not os.path.isfile(path):
            continue
        with open(path, 'rb') as f:
            data = f.read(TRIM_LIMIT + 1)
        if len(data) > TRIM_LIMIT:      # not a file this run wrote (a line per epoch): left as it is
            continue
        lines = data.split(b'\n')
        steps = [RESULT_STEP_RE.match(line) for line in lines]
        kept = [line for line, found in zip(lines, steps) if not (found and int(found.group(1)) > step)]
        if len(kept) != len(lines):
            write_atomic(path, b'\n'.join(kept))


def run_checks(config, sess, graph, checks, batch_size, step, summary_writer, log_dir):
    """Every target's check through the training pipeline, on the moving averages of the weights with
    --lfw_use_moving_averages (graph.average_swap). Returns [(accuracy, validation rate)] per target."""
    weights = graph.average_swap(sess) if config.lfw_use_moving_averages else contextlib.nullcontext()
    with weights:
        return [check.run(lambda items: embed_lfw(config, sess, graph, items, batch_size, check.set.encoded,
                                                  check.name), step, summary_writer, log_dir) for check in checks]


def embed_lfw(config, sess, graph, items, batch_size, encoded=False, name=LFW):
    """Embeddings of image paths (or encoded images) through the training pipeline; with
    --lfw_use_flipped_images the embeddings of each image and of its mirror image side by side."""
    if encoded:
        items = input_pipeline.encoded_items(items)
    control = input_pipeline.control_flags(fixed_standardization=config.use_fixed_image_standardization)
    flips = [False, True] if config.lfw_use_flipped_images else [False]
    label = '%s embeddings' % ('LFW' if name == LFW else name)
    parts = [embed_through_pipeline(
        sess, graph.queue, graph.embeddings, graph.label_batch, items, batch_size,
        control | (input_pipeline.FLIP if flip else 0), {graph.phase_train_placeholder: False},
        graph.batch_size_placeholder, log_label=label + (' (flipped)' if flip else ''))
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
