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
import re
import shutil
import zipfile
from collections import namedtuple

import numpy as np

from facenet_tf.errors import FaceNetError
from facenet_tf.files import TEMPORARY_RE, atomic_path, require_regular_file, write_atomic

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
    """The Embeddings of a file, checked (check_layout, check_content), or a one-line FaceNetError
    naming the file and what is wrong. Only hard-linked datasets stored in the file itself are read:
    external links, external raw storage and virtual datasets (which make HDF5 read other files) are
    refused, and each dataset's declared size is checked against the file's size before it is read."""
    h5py = _h5py()
    path = os.path.expanduser(path)
    if not os.path.exists(path) or os.path.isdir(path):
        raise FaceNetError('embeddings file not found: %s%s' % (path, ' (a folder)' if os.path.isdir(path) else ''))
    require_regular_file(path, 'an embeddings file is an .h5 written by export_embeddings.py')
    if not is_embeddings_file(path):
        raise FaceNetError('%s is not an embeddings file (not an HDF5 file)' % path)
    try:
        with h5py.File(path, 'r') as f:
            datasets = check_layout(path, f, os.path.getsize(path))
            attrs = _attributes(path, f)
            data = Embeddings(datasets['embeddings'][()], datasets['labels'][()],
                              _strings(path, 'paths', datasets['paths'][()]),
                              _strings(path, 'class_names', datasets['class_names'][()]), attrs)
    except FaceNetError:
        raise
    except (OSError, ValueError, TypeError, KeyError, RuntimeError) as e:
        raise FaceNetError('cannot read embeddings file %s: %s' % (path, str(e).splitlines()[0] if str(e)
                                                                    else type(e).__name__))
    return check_content(path, data)


BUILTIN_FILTERS = {1, 2, 3, 4, 5, 6, 32000}  # deflate, shuffle, fletcher32, szip, nbit, scaleoffset, lzf (h5py)
MAX_EXPANSION = 16  # declared bytes of a dataset per byte of the file (real embeddings barely compress)
VLEN_ITEM_BYTES = 64  # memory of one stored string read into Python, besides its characters


def check_layout(path, f, file_size):
    """{name: h5py Dataset} of the format's datasets in the open file `f`, refused in one line when
    one is missing, is not a dataset, lives outside the file, needs a filter plugin, has the wrong
    rank or type, or declares more data than the file can hold (MAX_EXPANSION x its size: memory
    follows the real data)."""
    h5py = _h5py()
    if f.attrs.get('format') != FORMAT:
        raise FaceNetError('%s is not an embeddings file of format %d (missing the format attribute)'
                           % (path, FORMAT))
    budget = MAX_EXPANSION * file_size + (1 << 20)
    datasets = {}
    for name in DATASETS:
        link = f.get(name, getlink=True)
        if link is None:
            raise FaceNetError('%s is not an embeddings file of format %d (missing %s)' % (path, FORMAT, name))
        if not isinstance(link, h5py.HardLink):
            raise FaceNetError('%s: %s is a link to %s, not data stored in the file (refused)'
                               % (path, name, type(link).__name__))
        dset = f[name]
        if not isinstance(dset, h5py.Dataset):
            raise FaceNetError('%s: %s is a %s, not a dataset' % (path, name, type(dset).__name__))
        plist = dset.id.get_create_plist()
        if plist.get_layout() == h5py.h5d.VIRTUAL or plist.get_external_count():
            raise FaceNetError('%s: %s keeps its data in other files (%s; refused)'
                               % (path, name, 'a virtual dataset' if plist.get_layout() == h5py.h5d.VIRTUAL
                                  else 'external storage'))
        filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
        if not set(filters) <= BUILTIN_FILTERS:
            raise FaceNetError('%s: %s is stored with HDF5 filter %d, not one built into HDF5 (refused: a filter '
                               'plugin would be loaded)' % (path, name, min(set(filters) - BUILTIN_FILTERS)))
        strings = h5py.check_string_dtype(dset.dtype) is not None
        ndim, ok_type = {'embeddings': (2, dset.dtype == np.float32),
                         'labels': (1, dset.dtype.kind in 'iu'),
                         'paths': (1, strings), 'class_names': (1, strings)}[name]
        if dset.ndim != ndim or not ok_type:
            raise FaceNetError('%s: %s is a %d-D %s dataset, expected %d-D %s' % (
                path, name, dset.ndim, dset.dtype, ndim,
                {'embeddings': 'float32', 'labels': 'integer'}.get(name, 'string')))
        declared = dset.size * (VLEN_ITEM_BYTES if strings else dset.dtype.itemsize)
        if declared > budget:
            raise FaceNetError('%s: %s declares shape %s (%d bytes), more than the %d-byte file can hold'
                               % (path, name, dset.shape, declared, file_size))
        datasets[name] = dset
    return datasets


SHARD_RE = re.compile(r'^(\d{1,9})/(\d{1,9})$')


def _attributes(path, f):
    """The format's attributes present in `f`, each a scalar of the right kind."""
    attrs = {}
    for key in ATTRIBUTES:
        if key not in f.attrs:
            continue
        if f.attrs.get_id(key).shape not in ((), None):
            raise FaceNetError('%s: the attribute %s is not a single value' % (path, key))
        value = _plain(f.attrs[key])
        kind = {'image_size': int, 'batch_size': int, 'use_fixed_image_standardization': bool,
                'use_flipped_images': bool}.get(key, str)
        if kind is bool and type(value) is int and value in (0, 1):
            value = bool(value)
        if type(value) is not kind:
            raise FaceNetError('%s: the attribute %s is not a %s' % (path, key, kind.__name__))
        attrs[key] = value
    shard = attrs.get('shard', '')
    match = SHARD_RE.match(shard)
    if shard and not (match and int(match.group(1)) < int(match.group(2))):
        raise FaceNetError('%s: the shard attribute %r is not INDEX/COUNT with INDEX < COUNT' % (path, shard))
    return attrs


def _plain(value):
    """HDF5 attribute values as plain Python values (numpy scalars and bytes unwrapped)."""
    if isinstance(value, bytes):
        return value.decode('utf-8')
    return value.item() if isinstance(value, np.generic) else value


def _strings(path, name, values):
    try:
        return [v.decode('utf-8') if isinstance(v, bytes) else str(v) for v in values]
    except UnicodeDecodeError:
        raise FaceNetError('%s: %s holds text that is not UTF-8' % (path, name))


PATHS_RE = re.compile(r'(?:[^/\\\x00-\x1f\x7f]+/(?!\.\.?\n)[^/\\\x00-\x1f\x7f]+\n)*')  # lines <class>/<file>
CONTROL_RE = re.compile(r'[\x00-\x1f\x7f]')


def _bad_text(text):
    return not text or CONTROL_RE.search(text) is not None


def _paths_fit(paths, names, labels):
    """Whether every path is `<class>/<file>` (no other '/', '\\' or control character, file not
    '.' or '..') with the class of its label: inside the dataset folder. At C speed (millions of rows)."""
    if PATHS_RE.fullmatch('\n'.join(paths) + '\n') is None:
        return False
    prefixes = np.array([name + '/' for name in names], dtype=object)[labels].tolist()
    return all(map(str.startswith, paths, prefixes))


def check_content(path, data):
    """`data` when its parts agree (one label and path per row, labels index class_names, paths
    `<class>/<file>` inside the dataset folder, finite embeddings), else a one-line FaceNetError."""
    n = len(data.embeddings)
    if len(data.labels) != n or len(data.paths) != n:
        raise FaceNetError('%s: %d embedding rows but %d labels and %d paths' % (path, n, len(data.labels),
                                                                                  len(data.paths)))
    names = data.class_names
    bad = [c for c in names if _bad_text(c) or '/' in c or c in ('.', '..')]
    if bad or len(set(names)) != len(names):
        raise FaceNetError('%s: class name %r is not a folder name (or is listed twice)'
                           % (path, bad[0] if bad else next(c for c in names if names.count(c) > 1)))
    labels = data.labels
    wrong = np.flatnonzero((labels < 0) | (labels >= len(names)))
    if len(wrong):
        raise FaceNetError('%s: label %d of row %d is not the index of one of the %d classes'
                           % (path, labels[wrong[0]], wrong[0], len(names)))
    labels = labels.astype(np.int64)
    if n and not _paths_fit(data.paths, names, labels):
        i, p = next((i, p) for i, p in enumerate(data.paths) if not _paths_fit([p], names, labels[i:i + 1]))
        raise FaceNetError('%s: path %r of row %d is not <class>/<file> of its class %r'
                           % (path, p, i, names[labels[i]]))
    if n and not np.all(np.isfinite(data.embeddings)):
        row = int(np.flatnonzero(~np.all(np.isfinite(data.embeddings), axis=1))[0])
        raise FaceNetError('%s: embedding row %d (%s) holds NaN or infinite values' % (path, row, data.paths[row]))
    return data._replace(labels=labels)


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
        if len(part.paths) and len(first.paths) and part.embeddings.shape[1] != first.embeddings.shape[1]:
            raise FaceNetError('%s holds %d-D embeddings, %s %d-D: not shards of one export'
                               % (path, part.embeddings.shape[1], inputs[0], first.embeddings.shape[1]))
        shards.append(part.attrs.get('shard', ''))
    counts = {s.split('/')[1] for s in shards if s}
    count = int(counts.pop()) if len(counts) == 1 else 0
    if '' in shards or sorted(shards) != sorted('%d/%d' % (i, count) for i in range(count)):
        raise FaceNetError('expected the files of shards 0..COUNT-1 of one export, got shards %s'
                           % ', '.join(s or 'none (a whole dataset)' for s in shards))
    labels = np.concatenate([p.labels for p in parts])
    paths = sum((p.paths for p in parts), [])
    if len(set(paths)) != len(paths):
        raise FaceNetError('the shard files %s hold the same image twice: not shards of one export'
                           % ', '.join(inputs))
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
    digest of what is computed, the model file's identity included) and `chunk_<i>.npz` (`ok`: which
    images of the chunk were read, `embeddings`: their rows). A folder with another plan is emptied of
    these files (a folder holding anything else is refused); a chunk that is not complete (empty,
    truncated, of the wrong size) is computed again, with every chunk after it."""

    def __init__(self, output, plan):
        self.folder = output + '.partial'
        self.digest = hashlib.sha1(json.dumps(plan, sort_keys=True).encode('utf-8')).hexdigest()
        self.discarded = False
        plan_file = os.path.join(self.folder, 'plan.json')
        if os.path.lexists(self.folder):
            if not os.path.isdir(self.folder) or os.path.islink(self.folder):
                raise FaceNetError('%s: expected the folder of an unfinished export there (remove it)' % self.folder)
            try:
                with open(plan_file) as f:
                    same = json.load(f).get('digest') == self.digest
            except (OSError, ValueError, AttributeError):
                same = False
            if not same:
                self._empty()
                self.discarded = True
        os.makedirs(self.folder, exist_ok=True)
        if not os.path.exists(plan_file):
            write_atomic(plan_file, json.dumps({'digest': self.digest}) + '\n')

    def _empty(self):
        """Remove this tool's files from the folder; refuse when it holds anything else."""
        names = os.listdir(self.folder)
        foreign = [n for n in names if not (n == 'plan.json' or CHUNK_RE.match(n) or TEMPORARY_RE.match(n))
                   or not os.path.isfile(os.path.join(self.folder, n))]
        if foreign:
            raise FaceNetError('%s holds %s, which an export did not write: not removing it (move it away)'
                               % (self.folder, foreign[0]))
        for name in names:
            os.remove(os.path.join(self.folder, name))

    def _chunk_path(self, i):
        return os.path.join(self.folder, 'chunk_%06d.npz' % i)

    def complete(self, sizes):
        """Number of complete chunks from the first on (a run resumes at this chunk); `sizes` are the
        planned images per chunk. A damaged chunk and all after it are removed."""
        dim = None
        for i, size in enumerate(sizes):
            try:
                ok, rows = self.load(i, size, dim)
            except (FaceNetError, OSError, ValueError, EOFError, zipfile.BadZipFile):
                for later in range(i, len(sizes)):
                    if os.path.isfile(self._chunk_path(later)):
                        os.remove(self._chunk_path(later))
                return i
            if len(rows):
                dim = rows.shape[1]
        return len(sizes)

    def save(self, i, ok, embeddings):
        with atomic_path(self._chunk_path(i)) as tmp:
            rows = np.asarray(embeddings, np.float32)
            with open(tmp, 'wb') as f:
                np.savez(f, ok=np.asarray(ok, bool), embeddings=rows if rows.ndim == 2 else rows.reshape(0, 0))

    def load(self, i, size, dim=None):
        """(ok, embeddings) of chunk i of `size` images (rows of `dim` values when given); a
        FaceNetError when the file is not such a chunk. Array headers are checked before reading."""
        path = self._chunk_path(i)
        if not os.path.isfile(path):
            raise FaceNetError('%s: missing' % path)
        with zipfile.ZipFile(path) as z:
            ok = _read_npy(path, z, 'ok.npy', np.dtype(bool), (size,))
            rows = _read_npy(path, z, 'embeddings.npy', np.dtype(np.float32), (int(ok.sum()), dim))
        return ok, rows

    def remove(self):
        shutil.rmtree(self.folder, ignore_errors=True)


CHUNK_RE = re.compile(r'^chunk_\d{6}\.npz$')


def _read_npy(path, z, name, dtype, shape):
    """Array `name` of the open zip `z`, refused unless its header declares `dtype` and `shape`
    (None: any size there, 2-D) and the stored bytes are exactly that much."""
    try:
        info = z.getinfo(name)
    except KeyError:
        raise FaceNetError('%s: no %s' % (path, name))
    if info.compress_type != zipfile.ZIP_STORED:  # as np.savez writes: the stored bytes are the data
        raise FaceNetError('%s: %s is compressed' % (path, name))
    with z.open(info) as f:
        version = np.lib.format.read_magic(f)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        declared, fortran, found = read_header(f)
        if found != dtype or len(declared) != len(shape) or fortran or any(
                want is not None and want != got for want, got in zip(shape, declared)):
            raise FaceNetError('%s: %s is %s %s, expected %s' % (path, name, found, declared, dtype))
        nbytes = int(np.prod(declared)) * dtype.itemsize
        if info.file_size - f.tell() != nbytes:
            raise FaceNetError('%s: %s is truncated' % (path, name))
        return np.frombuffer(f.read(nbytes), dtype).reshape(declared)
