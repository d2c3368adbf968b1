"""What classifier training needs beyond the shared training code: the classic filtering of a
dataset by distance to the class center, the shuffled sample stream, and the per-epoch statistics
(`stat.h5`)."""
import os

import numpy as np

from facenet_tf import dataset as dataset_io
from facenet_tf.errors import FaceNetError
from facenet_tf.files import atomic_path


# ---------------------------------------------------------------- filtering

def find_threshold(values, percentile):
    """The value below which `percentile` % of `values` lie (100-bin histogram, interpolated)."""
    hist, bin_edges = np.histogram(values, 100)
    cdf = np.cumsum(hist).astype(np.float32) / np.sum(hist)
    bin_centers = (bin_edges[:-1] + bin_edges[1:]) / 2
    return float(np.interp(percentile * 0.01, cdf, bin_centers))


def _as_str(value):
    return value.decode('utf-8') if isinstance(value, bytes) else str(value)


def filter_dataset(dataset, data_filename, percentile, min_nrof_images_per_class):
    """Classic filtering: drop the images whose `distance_to_center` (from an HDF5 file holding
    distance_to_center, label_list and image_list) is at or above the `percentile` threshold,
    then the classes left with fewer than min_nrof_images_per_class images.
    Returns (filtered dataset, number of images removed, number of classes removed)."""
    import h5py
    path = os.path.expanduser(data_filename)
    if not os.path.isfile(path):
        raise FaceNetError('filter file not found: %s' % data_filename)
    try:
        with h5py.File(path, 'r') as f:
            distance_to_center = np.array(f['distance_to_center'])
            label_list = np.array(f['label_list']).astype(np.int64)
            image_list = [_as_str(x) for x in np.array(f['image_list'])]
    except KeyError as e:
        raise FaceNetError('filter file %s lacks the dataset %s (expected distance_to_center, '
                        'label_list, image_list)' % (data_filename, e))
    except OSError as e:
        raise FaceNetError('cannot read filter file %s: %s' % (data_filename, e))
    if not (len(distance_to_center) == len(label_list) == len(image_list)) or not len(image_list):
        raise FaceNetError('filter file %s: distance_to_center, label_list and image_list must have the '
                        'same non-zero length' % data_filename)
    if label_list.max() >= len(dataset) or label_list.min() < 0:
        raise FaceNetError('filter file %s has labels up to %d but the dataset has %d classes'
                        % (data_filename, label_list.max(), len(dataset)))
    threshold = find_threshold(distance_to_center, percentile)
    paths = [list(c.image_paths) for c in dataset]
    removed = 0
    for i in np.where(distance_to_center >= threshold)[0]:
        label, image = label_list[i], image_list[i]
        if image in paths[label]:
            paths[label].remove(image)
            removed += 1
    kept = [dataset_io.ImageClass(c.name, p) for c, p in zip(dataset, paths)
            if len(p) >= min_nrof_images_per_class]
    return kept, removed, len(dataset) - len(kept)


# ---------------------------------------------------------------- sampling and statistics

class ShuffledIndices(object):
    """An endless stream of indices 0..n-1, each pass a new permutation (classic index queue)."""

    def __init__(self, n, rng=None):
        self.n = n
        self.rng = rng or np.random
        self.pending = np.zeros(0, np.int64)

    def take(self, count):
        parts, have = [self.pending], self.pending.size
        while have < count:
            perm = self.rng.permutation(self.n)
            parts.append(perm)
            have += perm.size
        stream = np.concatenate(parts)
        self.pending = stream[count:]
        return stream[:count]


STEP_KEYS = ('loss', 'center_loss', 'reg_loss', 'xent_loss', 'prelogits_norm', 'accuracy')
VALIDATION_KEYS = ('val_loss', 'val_xent_loss', 'val_accuracy')
EPOCH_KEYS = ('lfw_accuracy', 'lfw_valrate', 'learning_rate', 'time_train', 'time_validate', 'time_evaluate')
HIST_BINS = 1000


def new_statistics(max_nrof_epochs, epoch_size, validate_every_n_epochs):
    """The classic stat.h5 arrays: per step, per validation and per epoch (zeros until filled)."""
    nrof_steps = max_nrof_epochs * epoch_size
    nrof_val_samples = int(np.ceil(max_nrof_epochs / float(validate_every_n_epochs)))
    stat = {key: np.zeros((nrof_steps,), np.float32) for key in STEP_KEYS}
    stat.update({key: np.zeros((nrof_val_samples,), np.float32) for key in VALIDATION_KEYS})
    stat.update({key: np.zeros((max_nrof_epochs,), np.float32) for key in EPOCH_KEYS})
    stat['prelogits_hist'] = np.zeros((max_nrof_epochs, HIST_BINS), np.float32)
    return stat


def prelogits_histogram(prelogits, hist_max):
    """Counts of |prelogits| (clipped to hist_max) in HIST_BINS bins over [0, hist_max]."""
    return np.histogram(np.minimum(np.abs(prelogits), hist_max), bins=HIST_BINS, range=(0.0, hist_max))[0]


def save_statistics(stat, filename):
    """Write every array of `stat` as a dataset of an HDF5 file, atomically (a killed run leaves the
    previous complete file)."""
    import h5py
    with atomic_path(filename) as tmp:
        with h5py.File(tmp, 'w') as f:
            for key, value in stat.items():
                f.create_dataset(key, data=value)


def continue_statistics(stat, filename, step, epoch, validate_every_n_epochs):
    """A run continued at global `step` after `epoch` epochs: fill `stat` (new_statistics arrays)
    from the earlier run's stat.h5 up to that step and epoch; what the killed run recorded after it is
    left at zero (the epoch is redone). Only the arrays' known keys are read, and no more of each than
    `stat` holds, so the file's declared sizes do not set the memory used. A missing file is no
    error; an unreadable one is a FaceNetError naming it."""
    import h5py
    if not os.path.exists(filename):
        return stat
    nrof_validations = epoch // validate_every_n_epochs
    limits = dict({key: step for key in STEP_KEYS}, **{key: nrof_validations for key in VALIDATION_KEYS})
    try:
        with h5py.File(filename, 'r') as f:
            for key, array in stat.items():
                dataset = f.get(key)
                if not isinstance(dataset, h5py.Dataset) or dataset.shape[1:] != array.shape[1:] \
                        or dataset.dtype.kind not in 'fiu':
                    continue
                count = min(limits.get(key, epoch), len(array), dataset.shape[0] if dataset.shape else 0)
                if count > 0:
                    array[:count] = dataset[:count]
    except (OSError, ValueError) as e:
        raise FaceNetError('%s: cannot read the statistics of the run to continue: %s' % (filename, e))
    return stat
