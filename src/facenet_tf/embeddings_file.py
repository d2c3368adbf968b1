"""Embeddings files: the embeddings of an aligned dataset in one HDF5 file, their resumable chunks,
and joining shard files into one.

Layout (format 1):
  embeddings   float32 [N, D]   one row per embedded image (D = 2 x the model's size with flipped
                                images: [original | mirrored], as validate_on_lfw.py)
  labels       int64 [N]        index into class_names
  paths        str [N]          image path relative to the dataset folder (`<class>/<file>`)
  class_names  str [C]          every class folder of the dataset, sorted (so labels of shards agree)
  attributes   format, model, image_size, use_fixed_image_standardization, use_flipped_images,
               precision, batch_size, data_dir, shard ('' for a whole dataset, else 'INDEX/COUNT')
Rows are in dataset order (classes sorted, images sorted within a class). Files are written under a
temporary name and renamed. While a run is going, each complete chunk of rows is a small `.npz`
file (written atomically) in a `<file>.partial/` folder with the run's plan; a new run with the
same plan takes up from the complete chunks, and the folder is removed once the file is written.
"""
import hashlib
import json
import os
import shutil
from collections import namedtuple

import numpy as np

from facenet_tf.errors import FaceNetError
from facenet_tf.files import atomic_path, write_atomic

FORMAT = 1
DATASETS = ('embeddings', 'labels', 'paths', 'class_names')
ATTRIBUTES = ('model', 'image_size', 'use_fixed_image_standardization', 'use_flipped_images', 'precision',
              'batch_size', 'data_dir', 'shard')

Embeddings = namedtuple('Embeddings', 'embeddings labels paths class_names attrs')


def _h5py():
    import h5py
    return h5py


def is_embeddings_file(path):
    """Whether `path` is an HDF5 file (so a tool is given embeddings instead of an image folder)."""
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        return False
    with open(path, 'rb') as f:
        return f.read(8) == b'\x89HDF\r\n\x1a\n'


def write(path, data):
    """Write an Embeddings tuple to `path` (HDF5, atomically)."""
    h5py = _h5py()
    strings = h5py.string_dtype('utf-8')
    with atomic_path(path) as tmp:
        with h5py.File(tmp, 'w', track_order=True) as f:
            f.create_dataset('embeddings', data=np.asarray(data.embeddings, np.float32), track_times=False)
            f.create_dataset('labels', data=np.asarray(data.labels, np.int64), track_times=False)
            f.create_dataset('paths', data=np.array(data.paths, dtype=object), dtype=strings, track_times=False)
            f.create_dataset('class_names', data=np.array(data.class_names, dtype=object), dtype=strings,
                             track_times=False)
            f.attrs['format'] = FORMAT
            for key in ATTRIBUTES:
                f.attrs[key] = data.attrs[key]


def read(path):
    """The Embeddings of a file, or a one-line FaceNetError naming what is wrong."""
    h5py = _h5py()
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise FaceNetError('embeddings file not found: %s' % path)
    try:
        with h5py.File(path, 'r') as f:
            missing = [name for name in DATASETS if name not in f]
            if missing or f.attrs.get('format') != FORMAT:
                raise FaceNetError('%s is not an embeddings file of format %d (missing %s)'
                                   % (path, FORMAT, ', '.join(missing) or 'the format attribute'))
            attrs = {key: _plain(f.attrs[key]) for key in ATTRIBUTES if key in f.attrs}
            return Embeddings(f['embeddings'][()], f['labels'][()],
                              [p.decode('utf-8') for p in f['paths'][()]],
                              [c.decode('utf-8') for c in f['class_names'][()]], attrs)
    except OSError as e:
        raise FaceNetError('cannot read embeddings file %s: %s' % (path, str(e).splitlines()[0]))


def _plain(value):
    """HDF5 attribute values as plain Python values (numpy scalars and bytes unwrapped)."""
    if isinstance(value, bytes):
        return value.decode('utf-8')
    return value.item() if isinstance(value, np.generic) else value


def rows_of(data, paths):
    """Embedding rows of the given relative paths (a FaceNetError names the first one missing)."""
    index = {p: i for i, p in enumerate(data.paths)}
    missing = [p for p in paths if p not in index]
    if missing:
        raise FaceNetError('%d image(s) are not in the embeddings file, e.g. %s' % (len(missing), missing[0]))
    return data.embeddings[[index[p] for p in paths]]


def dataset(data):
    """The file's classes as an ImageClass list (relative paths), every class of class_names."""
    from facenet_tf.dataset import ImageClass
    paths = [[] for _ in data.class_names]
    for label, path in zip(data.labels, data.paths):
        paths[label].append(path)
    return [ImageClass(name, p) for name, p in zip(data.class_names, paths)]


def merge(inputs, output):
    """Join the files of the shards of one export into `output` (rows in dataset order); they must
    come from the same dataset, model and settings and be the complete set 0..COUNT-1. Returns the
    merged Embeddings."""
    parts = [read(p) for p in inputs]
    if not parts:
        raise FaceNetError('nothing to merge')
    first = parts[0]
    shards = []
    for path, part in zip(inputs, parts):
        if part.class_names != first.class_names:
            raise FaceNetError('%s lists other classes than %s: not shards of one dataset' % (path, inputs[0]))
        settings = {k: v for k, v in part.attrs.items() if k != 'shard'}
        if settings != {k: v for k, v in first.attrs.items() if k != 'shard'}:
            raise FaceNetError('%s was exported with other settings than %s' % (path, inputs[0]))
        shards.append(part.attrs.get('shard', ''))
    counts = {s.split('/')[1] for s in shards if s}
    count = int(counts.pop()) if len(counts) == 1 else 0
    if '' in shards or sorted(shards) != sorted('%d/%d' % (i, count) for i in range(count)):
        raise FaceNetError('expected the files of shards 0..COUNT-1 of one export, got shards %s'
                           % ', '.join(s or 'none (a whole dataset)' for s in shards))
    labels = np.concatenate([p.labels for p in parts])
    paths = sum((p.paths for p in parts), [])
    order = sorted(range(len(paths)), key=lambda i: (labels[i], paths[i]))
    attrs = dict(first.attrs, shard='')
    rows = np.concatenate([p.embeddings for p in parts if len(p.paths)] or [first.embeddings])
    merged = Embeddings(rows[order], labels[order],
                        [paths[i] for i in order], first.class_names, attrs)
    write(output, merged)
    return merged


# ---------------------------------------------------------------------------------------------
# Chunks of a run in progress

class PartialRun(object):
    """The complete chunks of an unfinished export, in `<output>.partial/`: `plan.json` (the
    digest of what is computed) and `chunk_<i>.npz` (`ok`: which images of the chunk were read,
    `embeddings`: their rows). A folder with another plan is emptied."""

    def __init__(self, output, plan):
        self.folder = output + '.partial'
        self.digest = hashlib.sha1(json.dumps(plan, sort_keys=True).encode('utf-8')).hexdigest()
        self.discarded = False
        plan_file = os.path.join(self.folder, 'plan.json')
        if os.path.isdir(self.folder):
            try:
                with open(plan_file) as f:
                    same = json.load(f).get('digest') == self.digest
            except (OSError, ValueError):
                same = False
            if not same:
                shutil.rmtree(self.folder)
                self.discarded = True
        os.makedirs(self.folder, exist_ok=True)
        if not os.path.exists(plan_file):
            write_atomic(plan_file, json.dumps({'digest': self.digest}) + '\n')

    def _chunk_path(self, i):
        return os.path.join(self.folder, 'chunk_%06d.npz' % i)

    def complete(self):
        """Number of complete chunks from the first on (a run resumes at this chunk)."""
        i = 0
        while os.path.exists(self._chunk_path(i)):
            i += 1
        return i

    def save(self, i, ok, embeddings):
        with atomic_path(self._chunk_path(i)) as tmp:
            with open(tmp, 'wb') as f:
                np.savez(f, ok=np.asarray(ok, bool), embeddings=np.asarray(embeddings, np.float32))

    def load(self, i):
        """(ok, embeddings) of chunk i."""
        with np.load(self._chunk_path(i)) as z:
            return z['ok'], z['embeddings']

    def remove(self):
        shutil.rmtree(self.folder, ignore_errors=True)
