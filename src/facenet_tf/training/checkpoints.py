"""Checkpoints of a run: saving them in the classic layout, keeping the best-checking one in `best/`,
and restoring a pretrained model (a model folder or a checkpoint prefix).

Layout: `<model_dir>/model-<subdir>.meta` once and `model-<subdir>.ckpt-<n>` after every epoch (the
Saver keeps the last 3). With a per-epoch LFW check, `<model_dir>/best/` holds a copy of the `.meta`
and of the checkpoint of the epoch with the highest LFW accuracy so far (the first such epoch on a
tie), with its own `checkpoint` file and `best.txt` (`<n>\t<accuracy>\t<validation rate>`), so the
folder loads as a model folder.

The training state (`<model_dir>/training_state/state.ckpt-<global step>`, saved after every epoch
once the epoch's statistics are written; only the latest is kept) holds every global variable:
weights, moving averages, optimizer slots, loss averages and the global step, from which a run
continued with --resume takes up its epoch count and learning-rate schedule. It is found by listing
that folder (the `checkpoint` state file, whose paths could name any file, is not read)."""
import os
import re
import shutil

from facenet_tf import model_io
from facenet_tf.errors import FaceNetError
from facenet_tf.tf_setup import configure

tf = configure()  # TensorFlow set up for TF1 graphs (see facenet_tf.tf_setup)
tf1 = tf.compat.v1

CLASSIFIER_SCOPE_PREFIX = 'Logits'
BEST_FOLDER = 'best'
STATE_FOLDER = 'training_state'
STATE_RE = re.compile(r'^state\.ckpt-(\d+)\.index$')


def save_checkpoint(sess, saver, summary_writer, model_dir, subdir, step):
    """Save `model-<subdir>.ckpt-<step>` (and the .meta once); returns the checkpoint prefix."""
    model_io.save_variables_and_metagraph(sess, saver, summary_writer, model_dir, subdir, step)
    return os.path.join(model_dir, 'model-%s.ckpt-%d' % (subdir, step))


class BestCheckpoint(object):
    """Keeps a copy of the checkpoint with the highest LFW accuracy in `<model_dir>/best/`."""

    def __init__(self, model_dir, subdir):
        self.model_dir = model_dir
        self.subdir = subdir
        self.folder = os.path.join(model_dir, BEST_FOLDER)
        self.accuracy = None
        self.prefix = None

    def update(self, prefix, accuracy, val_rate, log=print):
        """Copy the checkpoint `prefix` to best/ when `accuracy` beats every earlier one; True if so."""
        if self.accuracy is not None and not accuracy > self.accuracy:
            return False
        os.makedirs(self.folder, exist_ok=True)
        name = os.path.basename(prefix)
        for f in os.listdir(self.folder):
            if not f.endswith('.meta'):
                os.remove(os.path.join(self.folder, f))
        for f in os.listdir(self.model_dir):
            if f.startswith(name + '.'):
                shutil.copyfile(os.path.join(self.model_dir, f), os.path.join(self.folder, f))
        meta = 'model-%s.meta' % self.subdir
        if not os.path.exists(os.path.join(self.folder, meta)):
            shutil.copyfile(os.path.join(self.model_dir, meta), os.path.join(self.folder, meta))
        tf1.train.update_checkpoint_state(self.folder, name)
        number = name.rsplit('-', 1)[1]
        with open(os.path.join(self.folder, 'best.txt'), 'w') as f:
            f.write('%s\t%.5f\t%.5f\n' % (number, accuracy, val_rate))
        self.accuracy, self.prefix = accuracy, os.path.join(self.folder, name)
        log('Best LFW accuracy so far (%.5f): checkpoint %s kept in %s' % (accuracy, number, self.folder))
        return True


def checkpoint_prefix(pretrained_model):
    """A checkpoint prefix from either a prefix (`.../model-X.ckpt-N`) or a model folder."""
    path = os.path.expanduser(pretrained_model)
    if os.path.isdir(path):
        _, ckpt_file = model_io.get_model_filenames(path)
        return os.path.join(path, ckpt_file)
    if os.path.exists(path + '.index') or os.path.isfile(path):
        return path
    raise FaceNetError('pretrained model not found: %s (give a model folder or a checkpoint prefix '
                       'such as .../model-20180402-114759.ckpt-275)' % pretrained_model)


def readable_checkpoint(pretrained_model):
    """{name: shape} of the variables of a --pretrained_model (checked before a run's folders are
    made): a checkpoint TensorFlow cannot read is one FaceNetError naming it."""
    prefix = checkpoint_prefix(pretrained_model)
    try:
        return tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    except (tf.errors.OpError, ValueError) as e:
        reason = str(e).strip().splitlines()[0].replace(prefix + ': ', '').replace(prefix, 'it')
        raise FaceNetError('%s: cannot read the pretrained model\'s checkpoint: %s' % (prefix, reason[:200]))


def _restorable(var_list, shapes, log):
    """(variables to restore, names missing from the checkpoint); logs each skipped variable."""
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
    return restore, missing


def restore_pretrained(sess, pretrained_model, var_list, averages=None, log=print):
    """Restore every variable of var_list that the checkpoint holds with the same shape; skip the
    classifier (`Logits*`) and mismatched shapes with one line each. Moving averages the checkpoint
    lacks start from their restored variable. Returns the number of variables restored."""
    prefix = checkpoint_prefix(pretrained_model)
    shapes = readable_checkpoint(pretrained_model)
    restore, missing = _restorable(var_list, shapes, log)
    if not restore:
        raise FaceNetError('pretrained model %s holds none of this network\'s variables' % pretrained_model)
    tf1.train.Saver(restore).restore(sess, prefix)
    restored = {v.op.name for v in restore}
    copies = [shadow.assign(var) for shadow, var in (averages or {}).items()
              if shadow.op.name in missing and var.op.name in restored]
    if copies:
        sess.run(copies)
    log('pretrained model: restored %d variables from %s (%d not in it, %d moving averages set from '
        'their variables)' % (len(restore), prefix, len(missing), len(copies)))
    return len(restore)


def state_prefixes(model_dir):
    """{global step: prefix} of the training states in <model_dir>/training_state."""
    folder = os.path.join(model_dir, STATE_FOLDER)
    names = os.listdir(folder) if os.path.isdir(folder) else []
    return {int(m.group(1)): os.path.join(folder, 'state.ckpt-%s' % m.group(1))
            for m in map(STATE_RE.match, names) if m}


def checkpoint_files(model_dir):
    """The names of the classic checkpoint files (`model-*.ckpt-*`) in a run's model folder."""
    names = os.listdir(model_dir) if os.path.isdir(model_dir) else []
    return [name for name in names if name.startswith('model-') and '.ckpt-' in name]


def latest_state(model_dir):
    """The prefix of the latest training state of a run, or None."""
    prefixes = state_prefixes(model_dir)
    return prefixes[max(prefixes)] if prefixes else None


def save_state(sess, saver, model_dir, step):
    """Save the training state at `step` (saver: every global variable), then delete the older ones of
    the run. Returns its prefix."""
    folder = os.path.join(model_dir, STATE_FOLDER)
    os.makedirs(folder, exist_ok=True)
    prefix = saver.save(sess, os.path.join(folder, 'state.ckpt'), global_step=step, write_meta_graph=False)
    for old, old_prefix in state_prefixes(model_dir).items():
        if old != step:
            for name in os.listdir(folder):
                if name.startswith(os.path.basename(old_prefix) + '.'):
                    os.remove(os.path.join(folder, name))
    return prefix


def restore_state(sess, saver, prefix, var_list):
    """Restore a run's training state into the variables of var_list; a state that does not fit this
    graph (other flags than the run's) is one FaceNetError naming the state and the first mismatch."""
    try:
        shapes = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    except (tf.errors.OpError, ValueError) as e:
        raise FaceNetError('cannot read the training state %s: %s' % (prefix, str(e).strip().splitlines()[0]))
    for var in var_list:
        name = var.op.name
        if name not in shapes:
            raise FaceNetError('%s: the training state lacks %s: the run was started with other flags (see its '
                               'arguments.txt)' % (prefix, name))
        if list(shapes[name]) != var.shape.as_list():
            raise FaceNetError('%s: %s has shape %s in the training state, %s here: the run was started with other '
                               'flags (see its arguments.txt)'
                               % (prefix, name, list(shapes[name]), var.shape.as_list()))
    try:
        saver.restore(sess, prefix)
    except (tf.errors.OpError, ValueError) as e:
        raise FaceNetError('cannot restore the training state %s: %s' % (prefix, str(e).strip().splitlines()[0]))
