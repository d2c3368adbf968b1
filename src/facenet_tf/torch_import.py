"""facenet-pytorch state dicts (.pt: 20180402-114759-vggface2.pt, 20180408-102900-casia-webface.pt)
to a classic model folder, read without PyTorch.

The files are `torch.save()`s of InceptionResnetV1's state dict, an OrderedDict of tensors named after
its modules (`conv2d_1a.conv.weight`, `repeat_1.0.branch1.1.bn.running_var`, `block8.conv2d.bias`,
`last_linear.weight`, `last_bn.bias`; the classifier `logits.*` is ignored), in either layout: the zip
archive (PyTorch >= 1.6: `<name>/data.pkl`, whose tensors name their storages by persistent ids
`('storage', type, key, location, elements)`, and raw little-endian bytes in `<name>/data/<key>`) or
the older stream (pickled magic number, protocol and system info, the dict, the list of storage
keys, then each storage as an 8-byte element count and its bytes).

Nothing in the file is trusted: the unpickler admits only collections.OrderedDict,
torch._utils._rebuild_tensor_v2 and torch `<Type>Storage` classes (float, half, bfloat16, double;
long and int for counters), as stand-ins that record what the file declares; any other global, call
or object state is refused before anything runs. A tensor is read only once the network has checked
its declared shape and its storage has been checked against the bytes the file holds, so memory is
set by the network; archive members must be plain names under one folder; the total size is capped.

Layouts: convolutions OIHW -> HWIO, the bottleneck Linear (out, in) -> (in, out); BatchNorm bias,
running_mean, running_var -> BatchNorm/beta, moving_mean, moving_variance (eps 0.001 in both). The
classic batch norm has no scale: a BatchNorm weight (gamma) other than 1 is folded into the
variance, (var + eps) / gamma^2 - eps (the same outputs for gamma > 0; gamma <= 0 is refused).
"""
import collections
import io
import math
import os
import pickle
import re
import struct
import zipfile

import numpy as np

from facenet_tf import keras_import
from facenet_tf.errors import FaceNetError

SCOPE = keras_import.SCOPE
EPSILON = 0.001                 # facenet-pytorch's BatchNorm eps, as the classic network's
MAX_PICKLE_BYTES = 16 << 20     # the pickled dict (facenet-pytorch's: about 60 KB)
MAX_ARCHIVE_BYTES = 1 << 30     # all members of a zip archive, uncompressed (the 512-D file: 112 MB)
MAX_MEMBERS = 100000
MAX_RANK = 8
LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
LEGACY_PROTOCOL = 1001
SUFFIXES = ('.pt', '.pth')
IMAGE_SIZE = 160                # facenet-pytorch's input, as the classic models'

# torch storage class -> (dtype of its bytes, whether it holds floats)
STORAGE_TYPES = {'FloatStorage': ('<f4', True), 'DoubleStorage': ('<f8', True), 'HalfStorage': ('<f2', True),
                 'BFloat16Storage': ('<u2', True), 'LongStorage': ('<i8', False), 'IntStorage': ('<i4', False)}
_KEY = re.compile(r'^\w{1,64}$')


class StorageType:
    """Stands for a torch `<Type>Storage` class named in the pickle: never called."""

    def __init__(self, name):
        self.name, self.dtype, self.is_float = name, np.dtype(STORAGE_TYPES[name][0]), STORAGE_TYPES[name][1]


class Storage:
    """A storage the file declares: key (of the member or stream entry of its bytes), type, elements."""

    def __init__(self, key, kind, numel):
        self.key, self.kind, self.numel = key, kind, numel


class Tensor:
    """A tensor the file declares: a view (offset, shape, strides in elements) of a storage whose
    elements it was checked to stay inside; its data is read only by StateDict.read."""

    def __init__(self, storage, offset, shape, stride):
        self.storage, self.offset, self.shape, self.stride = storage, offset, shape, stride
        self.ndim, self.size = len(shape), math.prod(shape)


class Refused(pickle.UnpicklingError):
    """The pickle names or does something a state dict does not (the message says what)."""


def _sizes(value, what):
    if not (isinstance(value, tuple) and len(value) <= MAX_RANK
            and all(type(n) is int and 0 <= n < 1 << 40 for n in value)):
        raise Refused('a tensor %s that is not a tuple of at most %d sizes' % (what, MAX_RANK))
    return value


def _rebuild_tensor(storage, offset, size, stride, requires_grad, backward_hooks, metadata=None):
    """torch._utils._rebuild_tensor_v2's arguments, checked: the view stays inside its storage and
    spans no more elements than it has (a transposed or broadcast view, never a sparse sample)."""
    if not isinstance(storage, Storage) or type(offset) is not int or offset < 0:
        raise Refused('a tensor without a storage of this file')
    size, stride = _sizes(size, 'shape'), _sizes(stride, 'stride')
    if len(size) != len(stride) or type(requires_grad) is not bool:
        raise Refused('a tensor whose shape and strides differ in length')
    if backward_hooks or not (metadata is None or isinstance(metadata, dict)):
        raise Refused('a tensor with hooks or metadata (a state dict has none)')
    tensor = Tensor(storage, offset, size, stride)
    if tensor.size:
        span = 1 + sum((n - 1) * s for n, s in zip(size, stride))
        if offset + span > storage.numel:
            raise Refused('a tensor of shape %s that needs %d elements of a storage of %d'
                                         % (size, offset + span, storage.numel))
        if span > tensor.size:
            raise Refused('a tensor of shape %s spread over %d elements' % (size, span))
    return tensor


def _ordered_dict(*args):
    if args:
        raise Refused('an OrderedDict built from arguments')
    return collections.OrderedDict()


GLOBALS = {('collections', 'OrderedDict'): _ordered_dict, ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor}
CALLABLE = (_ordered_dict, _rebuild_tensor)


class StateDictUnpickler(pickle._Unpickler):
    """pickle's Python unpickler admitting only the globals in GLOBALS and the torch storage types,
    calls of the admitted rebuilders, storage persistent ids, and the `_metadata` state of an
    OrderedDict (dropped). Everything else is Refused before it is called or set."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file, legacy=False):
        super().__init__(file)
        self.legacy = legacy
        self.storages = {}

    def find_class(self, module, name):
        if (module, name) in GLOBALS:
            return GLOBALS[(module, name)]
        if module == 'torch' and name in STORAGE_TYPES:
            return StorageType(name)
        raise Refused('refused %s.%s (a state dict holds only tensors, their storages and '
                      'OrderedDicts)' % (module, name))

    def persistent_load(self, pid):
        fields = 6 if self.legacy else 5
        if not (isinstance(pid, tuple) and len(pid) == fields and pid[0] == 'storage'):
            raise Refused('refused a persistent id other than a storage: %.80r' % (pid,))
        kind, key, location, numel = pid[1:5]
        if not (isinstance(kind, StorageType) and isinstance(key, str) and _KEY.match(key)
                and isinstance(location, str) and type(numel) is int and 0 <= numel < 1 << 40):
            raise Refused('refused a storage id %.80r' % (pid,))
        if self.legacy and pid[5] is not None:
            raise Refused('refused a storage view (a state dict saves whole storages)')
        storage = self.storages.setdefault(key, Storage(key, kind, numel))
        if storage.kind.name != kind.name or storage.numel != numel:
            raise Refused('storage %s is declared twice, differently' % key)
        return storage

    def load_reduce(self):
        args = self.stack.pop()
        func = self.stack[-1]
        if not any(func is f for f in CALLABLE) or not isinstance(args, tuple):
            raise Refused('refused a call of %s' % getattr(func, 'name', type(func).__name__))
        self.stack[-1] = func(*args)
    dispatch[pickle.REDUCE[0]] = load_reduce

    def load_build(self):
        state = self.stack.pop()
        if not (type(self.stack[-1]) is collections.OrderedDict and isinstance(state, dict)
                and set(state) <= {'_metadata'}):
            raise Refused('refused to set the state of a %s' % type(self.stack[-1]).__name__)
    dispatch[pickle.BUILD[0]] = load_build

    def _refuse_object(self, *args):
        raise Refused('refused to create an object (a state dict creates none)')
    for _opcode in (pickle.NEWOBJ, pickle.NEWOBJ_EX, pickle.OBJ, pickle.INST):
        dispatch[_opcode[0]] = _refuse_object


class StateDict:
    """A torch.save() file of a state dict, open (a context manager): `tensors` {name: Tensor} as
    declared, `read(tensor)` its float32 data."""

    def __init__(self, path):
        self.path = path
        if not os.path.isfile(path):
            raise FaceNetError('%s: not found (expected a PyTorch .pt state dict)' % path)
        self.file = open(path, 'rb')
        try:
            self.size, self.zip = os.fstat(self.file.fileno()).st_size, None
            if self.file.read(4) == b'PK\x03\x04':   # a zip archive's first local header
                self._open_zip()
            else:
                self._open_stream()
        except (zipfile.BadZipFile, OSError, EOFError, struct.error, pickle.UnpicklingError, ValueError,
                TypeError, KeyError, IndexError, AttributeError, RecursionError, OverflowError) as e:
            self.close()
            raise FaceNetError('%s: not a PyTorch state dict (%s: %s)'
                               % (path, type(e).__name__, (str(e).splitlines() or [''])[0][:200]))
        except BaseException:
            self.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.zip is not None:
            self.zip.close()
        self.file.close()

    def _fail(self, what):
        raise FaceNetError('%s: %s' % (self.path, what))

    def _unpickle(self, data, legacy):
        unpickler = StateDictUnpickler(data, legacy)
        try:
            obj = unpickler.load()
        except Refused as e:
            self._fail(str(e))
        if not (isinstance(obj, dict) and obj and all(isinstance(k, str) for k in obj)
                and all(isinstance(v, Tensor) for v in obj.values())):
            self._fail('holds no state dict (a dict of named tensors)')
        self.tensors = obj
        return unpickler.storages

    def _open_zip(self):
        self.zip = zipfile.ZipFile(self.file)
        infos = self.zip.infolist()
        if not infos or len(infos) > MAX_MEMBERS:
            self._fail('a zip archive of %d members is not a torch.save() file' % len(infos))
        prefix = infos[0].filename.split('/')[0]
        for info in infos:
            parts = info.filename.split('/')
            if (parts[0] != prefix or len(parts) < 2 or '\\' in info.filename
                    or any(p in ('', '.', '..') for p in parts)):
                self._fail('archive member %r is not a plain name under %s/ (refused)' % (info.filename, prefix))
        total = sum(info.file_size for info in infos)
        if total > MAX_ARCHIVE_BYTES:
            self._fail('the archive unpacks to %d bytes, more than the %d a FaceNet state dict needs'
                       % (total, MAX_ARCHIVE_BYTES))
        self.members = {info.filename: info for info in infos}
        self.prefix = prefix + '/'
        order = self._member_bytes('byteorder', 16) if self.prefix + 'byteorder' in self.members else b'little'
        if order != b'little':
            self._fail('byte order %r (only little-endian files are read)' % order[:16])
        pkl = self._member_bytes('data.pkl', MAX_PICKLE_BYTES)
        for storage in self._unpickle(io.BytesIO(pkl), legacy=False).values():
            info = self.members.get(self.prefix + 'data/' + storage.key)
            if info is None:
                self._fail('storage %s has no member data/%s' % (storage.key, storage.key))
            if info.file_size != storage.numel * storage.kind.dtype.itemsize:
                self._fail('storage %s declares %d elements but data/%s holds %d bytes'
                           % (storage.key, storage.numel, storage.key, info.file_size))

    def _member_bytes(self, name, limit):
        info = self.members.get(self.prefix + name)
        if info is None:
            self._fail('no %s%s in the archive' % (self.prefix, name))
        if info.file_size > limit:
            self._fail('%s%s is %d bytes (at most %d)' % (self.prefix, name, info.file_size, limit))
        with self.zip.open(info) as f:
            return f.read(info.file_size)

    def _open_stream(self):
        self.file.seek(0)
        head = io.BytesIO(self.file.read(MAX_PICKLE_BYTES))
        header = [StateDictUnpickler(head).load() for _ in range(3)]
        if header[0] != LEGACY_MAGIC or header[1] != LEGACY_PROTOCOL or not isinstance(header[2], dict):
            self._fail('neither a zip archive nor a torch.save() stream')
        if not header[2].get('little_endian', False):
            self._fail('a big-endian torch.save() stream (only little-endian files are read)')
        storages = self._unpickle(head, legacy=True)
        keys = StateDictUnpickler(head).load()
        if not (isinstance(keys, list) and set(keys) == set(storages) and len(keys) == len(storages)):
            self._fail('the storage list does not match the storages the tensors use')
        self.offsets, position = {}, head.tell()
        for key in keys:
            storage = storages[key]
            self.file.seek(position)
            count = struct.unpack('<q', self.file.read(8))[0]
            end = position + 8 + storage.numel * storage.kind.dtype.itemsize
            if count != storage.numel or end > self.size:
                self._fail('storage %s declares %d elements but the file holds %s'
                           % (key, storage.numel, count if count != storage.numel else 'fewer bytes'))
            self.offsets[key], position = position + 8, end

    def read(self, tensor):
        """The float32 array of a tensor of this file, reading only the bytes its view spans."""
        storage = tensor.storage
        if not storage.kind.is_float:
            self._fail('a %s tensor where the network has float weights' % storage.kind.name)
        itemsize = storage.kind.dtype.itemsize
        span = 1 + sum((n - 1) * s for n, s in zip(tensor.shape, tensor.stride)) if tensor.size else 0
        start, length = tensor.offset * itemsize, span * itemsize
        if self.zip is not None:
            with self.zip.open(self.members[self.prefix + 'data/' + storage.key]) as f:
                f.seek(start)
                data = f.read(length)
        else:
            self.file.seek(self.offsets[storage.key] + start)
            data = self.file.read(length)
        if len(data) != length:
            self._fail('storage %s ends early' % storage.key)
        flat = np.frombuffer(data, storage.kind.dtype)
        if storage.kind.name == 'BFloat16Storage':
            flat = (flat.astype('<u4') << 16).view('<f4')
        view = np.lib.stride_tricks.as_strided(flat, tensor.shape, [s * flat.itemsize for s in tensor.stride])
        return np.array(view, dtype=np.float32)


# facenet-pytorch module path -> classic scope (below InceptionResnetV1/)
_STEM = {'conv2d_1a': 'Conv2d_1a_3x3', 'conv2d_2a': 'Conv2d_2a_3x3', 'conv2d_2b': 'Conv2d_2b_3x3',
         'conv2d_3b': 'Conv2d_3b_1x1', 'conv2d_4a': 'Conv2d_4a_3x3', 'conv2d_4b': 'Conv2d_4b_3x3'}
_TOWERS = {
    'block35': {'branch0': 'Branch_0/Conv2d_1x1', 'branch1.0': 'Branch_1/Conv2d_0a_1x1',
                'branch1.1': 'Branch_1/Conv2d_0b_3x3', 'branch2.0': 'Branch_2/Conv2d_0a_1x1',
                'branch2.1': 'Branch_2/Conv2d_0b_3x3', 'branch2.2': 'Branch_2/Conv2d_0c_3x3'},
    'block17': {'branch0': 'Branch_0/Conv2d_1x1', 'branch1.0': 'Branch_1/Conv2d_0a_1x1',
                'branch1.1': 'Branch_1/Conv2d_0b_1x7', 'branch1.2': 'Branch_1/Conv2d_0c_7x1'},
    'block8': {'branch0': 'Branch_0/Conv2d_1x1', 'branch1.0': 'Branch_1/Conv2d_0a_1x1',
               'branch1.1': 'Branch_1/Conv2d_0b_1x3', 'branch1.2': 'Branch_1/Conv2d_0c_3x1'},
    'mixed_6a': {'branch0': 'Branch_0/Conv2d_1a_3x3', 'branch1.0': 'Branch_1/Conv2d_0a_1x1',
                 'branch1.1': 'Branch_1/Conv2d_0b_3x3', 'branch1.2': 'Branch_1/Conv2d_1a_3x3'},
    'mixed_7a': {'branch0.0': 'Branch_0/Conv2d_0a_1x1', 'branch0.1': 'Branch_0/Conv2d_1a_3x3',
                 'branch1.0': 'Branch_1/Conv2d_0a_1x1', 'branch1.1': 'Branch_1/Conv2d_1a_3x3',
                 'branch2.0': 'Branch_2/Conv2d_0a_1x1', 'branch2.1': 'Branch_2/Conv2d_0b_3x3',
                 'branch2.2': 'Branch_2/Conv2d_1a_3x3'},
}
_REPEATS = {'repeat_1': ('Repeat/block35_%d/', 'block35', 5), 'repeat_2': ('Repeat_1/block17_%d/', 'block17', 10),
            'repeat_3': ('Repeat_2/block8_%d/', 'block8', 5)}
_BN = {'bias': 'BatchNorm/beta', 'running_mean': 'BatchNorm/moving_mean',
       'running_var': 'BatchNorm/moving_variance', 'weight': 'BatchNorm/gamma'}
IGNORED = re.compile(r'^logits\.(weight|bias)$|\.num_batches_tracked$')
CONV, LINEAR, VECTOR = 'conv', 'linear', 'vector'


def _leaf(scope, rest):
    """(classic name, kind) of a BasicConv2d's `conv.weight` / `bn.<param>` below `scope`."""
    if rest == 'conv.weight':
        return scope + '/weights', CONV
    if rest.startswith('bn.') and rest[3:] in _BN:
        return '%s/%s' % (scope, _BN[rest[3:]]), VECTOR
    return None


def classic_name(name):
    """(classic variable name, kind) of a facenet-pytorch state-dict name, kind being how the
    tensor is laid out (CONV, LINEAR, VECTOR); None for a name the network does not have. A BatchNorm
    weight maps to `<scope>/BatchNorm/gamma`, which the classic network has not: it is folded."""
    head, _, rest = name.partition('.')
    if head in _STEM:
        found = _leaf(_STEM[head], rest)
    elif head in _REPEATS or head in ('block8', 'mixed_6a', 'mixed_7a'):
        if head in _REPEATS:
            pattern, kind, count = _REPEATS[head]
            index, _, rest = rest.partition('.')
            if not index.isdigit() or not 0 <= int(index) < count or index != str(int(index)):
                return None
            scope, towers = pattern % (int(index) + 1), _TOWERS[kind]
        else:
            scope, towers = ('Block8/' if head == 'block8' else 'Mixed_%s/' % head[-2:]), _TOWERS[head]
        if rest in ('conv2d.weight', 'conv2d.bias') and not head.startswith('mixed'):   # the residual projection
            found = (scope + 'Conv2d_1x1/weights', CONV) if rest == 'conv2d.weight' else \
                (scope + 'Conv2d_1x1/biases', VECTOR)
        else:
            found = next((_leaf(scope + tower, rest[len(path) + 1:]) for path, tower in towers.items()
                          if rest.startswith(path + '.')), None)
    elif name == 'last_linear.weight':
        found = 'Bottleneck/weights', LINEAR
    elif head == 'last_bn' and rest in _BN:
        found = 'Bottleneck/' + _BN[rest], VECTOR
    else:
        found = None
    return None if found is None else ('%s/%s' % (SCOPE, found[0]), found[1])


AXES = {CONV: (2, 3, 1, 0), LINEAR: (1, 0), VECTOR: (0,)}   # classic axis i is torch axis AXES[kind][i]


def classic_shape(shape, kind):
    """The classic variable's shape of a tensor of `shape` laid out as `kind`."""
    return tuple(shape[axis] for axis in AXES[kind])


def to_classic(array, kind):
    """A torch weight array in the classic layout (OIHW -> HWIO, (out, in) -> (in, out))."""
    return np.ascontiguousarray(array.transpose(AXES[kind]))


def fold_gamma(variance, gamma, epsilon=EPSILON):
    """The moving variance that gives a scale-free batch norm the outputs of one with scale gamma:
    (var + eps) / gamma^2 - eps where gamma != 1 (exactly var where it is 1)."""
    folded = (variance.astype(np.float64) + epsilon) / np.square(gamma.astype(np.float64)) - epsilon
    return np.where(gamma == 1, variance, folded.astype(np.float32))


def plan(tensors, path):
    """({classic name: Declared classic shape}, {classic name: (torch name, kind)}, {BatchNorm scope:
    torch name of its gamma}) of a state dict's declared tensors; a one-line error for names the
    network does not have or tensors of the wrong rank."""
    declared, sources, gammas, unknown = {}, {}, {}, []
    for name, tensor in tensors.items():
        if IGNORED.search(name):
            continue
        found = classic_name(name)
        if found is None:
            unknown.append(name)
            continue
        target, kind = found
        if tensor.ndim != len(AXES[kind]):
            raise FaceNetError('%s: %s has shape %s, not a rank-%d tensor' % (path, name, tensor.shape,
                                                                               len(AXES[kind])))
        if target.endswith('/gamma'):
            gammas[target[:-len('gamma')]] = name
            continue
        declared[target] = keras_import.Declared(classic_shape(tensor.shape, kind))
        sources[target] = name, kind
    if unknown:
        raise FaceNetError('%s is not a facenet-pytorch InceptionResnetV1 state dict: %d tensor%s with unknown '
                           'names (%s)' % (path, len(unknown), '' if len(unknown) == 1 else 's',
                                           keras_import._listed(unknown)))
    for scope, name in gammas.items():
        variance = declared.get(scope + 'moving_variance')
        if variance is None or tuple(tensors[name].shape) != variance.shape:
            raise FaceNetError('%s: %s has no running_var of its shape' % (path, name))
    return declared, sources, gammas


def import_model(pt_file, model_dir, network, model_name, pb_file=None, log=print, overwrite=False):
    """Write the facenet-pytorch state dict `pt_file` as the classic folder `model_dir` (and, with
    pb_file, a frozen graph), as keras_import.write_classic_model does; the embedding size is
    last_linear's output width (512 for the published files). Returns (number of variables,
    embedding size)."""
    model_dir = keras_import.check_outputs(model_dir, pb_file, overwrite)
    with StateDict(pt_file) as state:
        declared, sources, gammas = plan(state.tensors, pt_file)

        def read(target):
            name, kind = sources[target]
            array = to_classic(state.read(state.tensors[name]), kind)
            scope = target[:-len('moving_variance')]
            if target.endswith('/moving_variance') and scope in gammas:
                gamma = state.read(state.tensors[gammas[scope]])
                if not np.all(gamma > 0):
                    raise FaceNetError('%s: %s has values <= 0 (a batch norm scale the classic network, '
                                       'which has none, cannot take)' % (pt_file, gammas[scope]))
                array = fold_gamma(array, gamma)
            return array
        return keras_import.write_classic_model(pt_file, declared, read, model_dir, network, model_name,
                                                IMAGE_SIZE, pb_file, log)
