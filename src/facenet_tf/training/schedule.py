"""Learning rates: schedule files (`epoch: rate` lines), the rate of an epoch, and the classic
staircase decay of the fed rate inside the graph."""
import math
import os

from facenet_tf.errors import FaceNetError
from facenet_tf.tf_setup import configure


TEXT_FILE_LIMIT = 1 << 20     # bytes: schedule and recipe files are a few lines; larger is not one of them


def read_text_file(filename, what, limit=TEXT_FILE_LIMIT):
    """The text of a small UTF-8 file the user named (a schedule, a recipe), read without trusting it:
    at most `limit` + 1 bytes are read; a folder, a larger file, NUL bytes or bytes that are not UTF-8
    are one FaceNetError naming the file and `what` it should be."""
    path = os.path.expanduser(filename)
    if os.path.isdir(path):
        raise FaceNetError('%s: is a folder, not a %s' % (filename, what))
    if not os.path.exists(path):
        raise FaceNetError('%s file not found: %s' % (what, filename))
    with open(path, 'rb') as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise FaceNetError('%s: larger than %d KiB, not a %s' % (filename, limit >> 10, what))
    if b'\0' in data:
        raise FaceNetError('%s: binary data (NUL bytes), not a %s' % (filename, what))
    try:
        return data.decode('utf-8')
    except UnicodeDecodeError as e:
        raise FaceNetError('%s: not UTF-8 text (byte %d), not a %s' % (filename, e.start, what))


def read_learning_rate_schedule(filename):
    """[(epoch, learning_rate), ...] from a schedule file: `epoch: lr` lines, '#' comments, a
    negative rate (e.g. -1) ends training at that epoch. The file is read through read_text_file
    (bounded, text only); rates must be finite."""
    text = read_text_file(filename, 'learning rate schedule')
    schedule = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split('#', 1)[0].strip()
        if not line:
            continue
        parts = line.split(':')
        try:
            if len(parts) != 2:
                raise ValueError
            epoch = int(parts[0])
            rate = -1.0 if parts[1].strip() == '-' else float(parts[1])
            if not math.isfinite(rate) or epoch < 0:
                raise ValueError
        except ValueError:
            raise FaceNetError('%s line %d: expected "epoch: learning_rate" (epoch >= 0, finite rate), found "%s"'
                               % (filename, lineno, raw.strip()[:80]))
        if schedule and epoch <= schedule[-1][0]:
            raise FaceNetError('%s line %d: epochs must increase (%d after %d)'
                               % (filename, lineno, epoch, schedule[-1][0]))
        schedule.append((epoch, rate))
    if not schedule:
        raise FaceNetError('learning rate schedule file %s holds no "epoch: learning_rate" line' % filename)
    if schedule[0][0] > 0:
        raise FaceNetError('learning rate schedule file %s must start at epoch 0' % filename)
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


def rate_for_epoch(config, schedule, epoch):
    """The rate fed in `epoch`: --learning_rate when positive, else the schedule's entry."""
    return config.learning_rate if config.learning_rate > 0.0 else learning_rate_for_epoch(schedule, epoch)


def learning_rate_tensor(learning_rate_placeholder, global_step, decay_epochs, epoch_size, decay_factor):
    """Staircase exponential decay of the fed rate every decay_epochs * epoch_size steps (classic)."""
    tf1 = configure().compat.v1  # TensorFlow loads here, not when the flags are read
    return tf1.train.exponential_decay(learning_rate_placeholder, global_step, decay_epochs * epoch_size,
                                       decay_factor, staircase=True)
