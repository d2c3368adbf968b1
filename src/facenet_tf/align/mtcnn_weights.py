"""MTCNN weights in the classic layout, read from the packaged files or from det1/det2/det3.npy.

The classic layout is one dict per network: layer name -> {'weights', 'biases'} or {'alpha'}, with
convolution kernels laid out for the transposed (width-first) images the networks are fed with.
The `mtcnn` wheel ships the same arrays as flat lists (joblib + lz4): kernels with height and width
swapped, PReLU alphas shaped (1, 1, C), in a fixed order given below.

Both kinds of file are pickles and may come from anywhere (`MTCNN(model_path=...)`), so neither is
unpickled with `pickle`/`joblib.load`: `_WeightUnpickler` admits only the NumPy array and dtype
reconstruction these files hold (and joblib's array wrapper), refuses any other global before it is
called, caps each array and the bytes read, and the arrays found must have the networks' shapes.
"""
import importlib.util
import io
import os
import pickle
import re

import numpy as np

from facenet_tf.errors import FaceNetError
from facenet_tf.files import require_regular_file

NETS = ('pnet', 'rnet', 'onet')
CLASSIC_FILES = {'pnet': 'det1.npy', 'rnet': 'det2.npy', 'onet': 'det3.npy'}

# Order of the arrays in each packaged list: (layer, parameter).
_PACKAGED_ORDER = {
    'pnet': [('conv1', 'weights'), ('conv1', 'biases'), ('PReLU1', 'alpha'),
             ('conv2', 'weights'), ('conv2', 'biases'), ('PReLU2', 'alpha'),
             ('conv3', 'weights'), ('conv3', 'biases'), ('PReLU3', 'alpha'),
             ('conv4-2', 'weights'), ('conv4-2', 'biases'),
             ('conv4-1', 'weights'), ('conv4-1', 'biases')],
    'rnet': [('conv1', 'weights'), ('conv1', 'biases'), ('prelu1', 'alpha'),
             ('conv2', 'weights'), ('conv2', 'biases'), ('prelu2', 'alpha'),
             ('conv3', 'weights'), ('conv3', 'biases'), ('prelu3', 'alpha'),
             ('conv4', 'weights'), ('conv4', 'biases'), ('prelu4', 'alpha'),
             ('conv5-2', 'weights'), ('conv5-2', 'biases'),
             ('conv5-1', 'weights'), ('conv5-1', 'biases')],
    'onet': [('conv1', 'weights'), ('conv1', 'biases'), ('prelu1', 'alpha'),
             ('conv2', 'weights'), ('conv2', 'biases'), ('prelu2', 'alpha'),
             ('conv3', 'weights'), ('conv3', 'biases'), ('prelu3', 'alpha'),
             ('conv4', 'weights'), ('conv4', 'biases'), ('prelu4', 'alpha'),
             ('conv5', 'weights'), ('conv5', 'biases'), ('prelu5', 'alpha'),
             ('conv6-2', 'weights'), ('conv6-2', 'biases'),
             ('conv6-3', 'weights'), ('conv6-3', 'biases'),
             ('conv6-1', 'weights'), ('conv6-1', 'biases')],
}


# Classic shape of each (layer, parameter), in the order of _PACKAGED_ORDER.
_SHAPES = {
    'pnet': [(3, 3, 3, 10), (10,), (10,), (3, 3, 10, 16), (16,), (16,), (3, 3, 16, 32), (32,), (32,),
             (1, 1, 32, 4), (4,), (1, 1, 32, 2), (2,)],
    'rnet': [(3, 3, 3, 28), (28,), (28,), (3, 3, 28, 48), (48,), (48,), (2, 2, 48, 64), (64,), (64,),
             (576, 128), (128,), (128,), (128, 4), (4,), (128, 2), (2,)],
    'onet': [(3, 3, 3, 32), (32,), (32,), (3, 3, 32, 64), (64,), (64,), (3, 3, 64, 64), (64,), (64,),
             (2, 2, 64, 128), (128,), (128,), (1152, 256), (256,), (256,), (256, 4), (4,), (256, 10),
             (10,), (256, 2), (2,)],
}
MAX_ELEMENTS = max(int(np.prod(shape)) for shapes in _SHAPES.values() for shape in shapes)
MAX_FILE_BYTES = 64 << 20   # the real files are under 2 MB (unpacked)
_LZ4_MAGIC = b'\x04\x22\x4d\x18'
_DTYPE_RE = re.compile(r'^[<>|=]?[fO]\d{1,2}$')


class RefusedGlobal(pickle.UnpicklingError):
    """The weight file names a global (class or function) that weight files never hold."""

    def __init__(self, module, name):
        self.name = '%s.%s' % (module, name)
        super().__init__('refused global %s (MTCNN weight files hold only NumPy arrays)' % self.name)


class _ArrayClass:
    """Stands for numpy.ndarray in a weight pickle: usable only as the class `_reconstruct` builds,
    never called itself (ndarray(shape) would allocate whatever shape the file declares)."""


def _reconstruct(subtype, shape, dtype):
    if subtype is not _ArrayClass or tuple(shape) != (0,):
        raise pickle.UnpicklingError('unexpected array reconstruction %r' % ((subtype, shape),))
    return np.ndarray.__new__(np.ndarray, (0,), dtype)


def _dtype(spec, align=False, copy=False):
    if not (isinstance(spec, str) and _DTYPE_RE.match(spec)):
        raise pickle.UnpicklingError('unexpected dtype %r' % (spec,))
    return np.dtype(spec, align, copy)


def _weight_globals():
    import joblib.numpy_pickle as jp
    allowed = {('numpy', 'ndarray'): _ArrayClass, ('numpy', 'dtype'): _dtype,
               ('joblib.numpy_pickle', 'NumpyArrayWrapper'): jp.NumpyArrayWrapper}
    for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        allowed[(module, '_reconstruct')] = _reconstruct
    return allowed


def _check_wrapper(wrapper):
    """joblib's NumpyArrayWrapper of a weight array: a float array of at most MAX_ELEMENTS elements
    (checked before joblib allocates and reads it)."""
    dtype, shape = getattr(wrapper, 'dtype', None), getattr(wrapper, 'shape', None)
    if not (isinstance(dtype, np.dtype) and dtype.kind == 'f' and dtype.fields is None
            and dtype.subdtype is None and dtype.itemsize in (2, 4, 8)):
        raise pickle.UnpicklingError('array of type %r where float weights are expected' % (dtype,))
    if not (isinstance(shape, tuple) and len(shape) <= 4
            and all(isinstance(n, int) and 0 <= n <= MAX_ELEMENTS for n in shape)
            and int(np.prod(shape, dtype=np.int64)) <= MAX_ELEMENTS):
        raise pickle.UnpicklingError('array shape %r is not a weight shape' % (shape,))
    if getattr(wrapper, 'order', 'C') not in ('C', 'F') or getattr(wrapper, 'subclass', None) is not _ArrayClass:
        raise pickle.UnpicklingError('unexpected array layout')
    wrapper.subclass = np.ndarray
    wrapper.allow_mmap = False


class _Limited(io.RawIOBase):
    """A read-only stream giving at most MAX_FILE_BYTES of `stream` (then an error)."""

    def __init__(self, stream):
        self._stream, self._left = stream, MAX_FILE_BYTES

    def readable(self):
        return True

    def readinto(self, buffer):
        n = self._stream.readinto(memoryview(buffer)[:max(0, min(len(buffer), self._left + 1))])
        self._left -= n
        if self._left < 0:
            raise pickle.UnpicklingError('more than %d MiB of data' % (MAX_FILE_BYTES >> 20))
        return n


def _unpickler(stream, joblib_file):
    """A restricted Unpickler of `stream` (joblib's array-reading one for a .lz4 list)."""
    import joblib.numpy_pickle as jp
    allowed = _weight_globals()
    base = jp.NumpyUnpickler if joblib_file else pickle.Unpickler

    class WeightUnpickler(base):
        dispatch = dict(getattr(base, 'dispatch', {}))

        def find_class(self, module, name):
            if (module, name) in allowed:
                return allowed[(module, name)]
            raise RefusedGlobal(module, name)

        def load_build(self):
            jp.Unpickler.load_build(self)
            top = self.stack[-1]
            if isinstance(top, jp.NumpyArrayWrapper):
                _check_wrapper(top)
                self.stack[-1] = top.read(self, True)
            elif isinstance(top, jp.NDArrayWrapper):   # old joblib: data in a companion file
                raise RefusedGlobal('joblib.numpy_pickle', 'NDArrayWrapper')

        if joblib_file:
            dispatch[pickle.BUILD[0]] = load_build

    stream = io.BufferedReader(_Limited(stream))
    if joblib_file:
        return WeightUnpickler('', stream, True)
    return WeightUnpickler(stream, encoding='latin1')


def read_weight_pickle(path):
    """The object pickled in a det*.npy (a 0-d object array) or a joblib .lz4 file, unpickled with
    the restricted unpickler; FaceNetError naming the file for anything else."""
    import lz4.frame
    require_regular_file(path)
    try:
        with open(path, 'rb') as f:
            if path.endswith('.npy'):
                version = np.lib.format.read_magic(f)
                if version not in ((1, 0), (2, 0)):
                    raise FaceNetError('%s: unsupported .npy version %d.%d' % ((path,) + version))
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, _, dtype = read_header(f)
                if dtype != np.dtype(object) or shape != ():
                    raise FaceNetError('%s: not MTCNN weights (a %s array of shape %s, expected a pickled '
                                       'dict)' % (path, dtype, shape))
                obj = _unpickler(f, False).load()
                return obj.item() if isinstance(obj, np.ndarray) and obj.shape == () else obj
            if f.read(4) != _LZ4_MAGIC:
                raise FaceNetError('%s: not an lz4-compressed joblib weight file' % path)
            f.seek(0)
            with lz4.frame.LZ4FrameFile(f, 'rb') as stream:
                return _unpickler(stream, True).load()
    except FaceNetError:
        raise
    except RefusedGlobal as e:
        raise FaceNetError('%s: %s' % (path, e))
    except MemoryError:
        raise FaceNetError('%s: declares more data than MTCNN weights hold' % path)
    except Exception as e:  # pickle, numpy and lz4 raise many unrelated types on a damaged file
        reason = (str(e).strip().splitlines() or [''])[0]
        raise FaceNetError('%s: not readable MTCNN weights (%s%s)' % (path, type(e).__name__,
                                                                      ': ' + reason if reason else ''))


def _checked(net, layers, path):
    """`layers` (classic dict) with every parameter of `net` present as float32 of its shape."""
    if not isinstance(layers, dict):
        raise FaceNetError('%s: holds a %s, not a dict of layers' % (path, type(layers).__name__))
    out = {}
    for (layer, param), shape in zip(_PACKAGED_ORDER[net], _SHAPES[net]):
        params = layers.get(layer)
        if not isinstance(params, dict) or param not in params:
            raise FaceNetError('%s: lacks %s/%s of the %s network' % (path, layer, param, net))
        value = params[param]
        if not (isinstance(value, np.ndarray) and value.dtype.kind == 'f' and value.dtype.fields is None
                and value.dtype.subdtype is None and value.dtype.itemsize in (2, 4, 8)):
            raise FaceNetError('%s: %s/%s is a %s, not a float array' % (path, layer, param,
                                                                        getattr(value, 'dtype', type(value).__name__)))
        if value.shape != shape:
            raise FaceNetError('%s: %s/%s has shape %s, the %s network needs %s'
                               % (path, layer, param, value.shape, net, shape))
        out.setdefault(layer, {})[param] = np.ascontiguousarray(value, dtype=np.float32)
    return out


def packaged_weights_dir():
    """Folder of the `mtcnn` wheel's weight files (found without importing that package)."""
    spec = importlib.util.find_spec('mtcnn')
    if spec is None or spec.origin is None:
        raise FaceNetError('the packaged MTCNN weights are missing: pip install mtcnn==1.0.0')
    return os.path.join(os.path.dirname(spec.origin), 'assets', 'weights')


def _from_packaged(net, arrays, path):
    """Flat packaged list -> classic dict (kernels' height/width swapped back, alphas flattened)."""
    order = _PACKAGED_ORDER[net]
    if not isinstance(arrays, list) or len(arrays) != len(order):
        raise FaceNetError('%s: expected a list of the %d %s arrays, found %s'
                           % (path, len(order), net, '%d items' % len(arrays) if isinstance(arrays, list)
                              else 'a %s' % type(arrays).__name__))
    layers = {}
    for (layer, param), arr in zip(order, arrays):
        if isinstance(arr, np.ndarray) and param == 'weights' and arr.ndim == 4:
            arr = arr.transpose(1, 0, 2, 3)
        elif isinstance(arr, np.ndarray) and param == 'alpha':
            arr = arr.reshape(-1)
        layers.setdefault(layer, {})[param] = arr
    return _checked(net, layers, path)


def load_packaged(weights_dir=None):
    """{net: classic dict} from the wheel's pnet/rnet/onet.lz4 files."""
    weights_dir = weights_dir or packaged_weights_dir()
    out = {}
    for net in NETS:
        path = os.path.join(weights_dir, net + '.lz4')
        if not os.path.isfile(path):
            raise FaceNetError('MTCNN weight file not found: %s' % path)
        out[net] = _from_packaged(net, read_weight_pickle(path), path)
    return out


def load_classic(model_dir):
    """{net: classic dict} from a folder holding det1.npy, det2.npy and det3.npy."""
    out = {}
    for net in NETS:
        path = os.path.join(model_dir, CLASSIC_FILES[net])
        if not os.path.isfile(path):
            raise FaceNetError('MTCNN weight file not found: %s' % path)
        out[net] = _checked(net, read_weight_pickle(path), path)
    return out


def load_weights(model_path=None):
    """Weights of the three networks: packaged ones for None, else a det*.npy or *.lz4 folder."""
    if model_path is None:
        return load_packaged()
    model_path = os.path.expanduser(model_path)
    if not os.path.isdir(model_path):
        raise FaceNetError('MTCNN model folder not found: %s' % model_path)
    if os.path.isfile(os.path.join(model_path, CLASSIC_FILES['pnet'])):
        return load_classic(model_path)
    if os.path.isfile(os.path.join(model_path, 'pnet.lz4')):
        return load_packaged(model_path)
    raise FaceNetError('no det1.npy/det2.npy/det3.npy (or pnet/rnet/onet.lz4) in %s' % model_path)


def save_classic(weights, model_dir):
    """Write {net: classic dict} as det1.npy, det2.npy, det3.npy (pickled dicts, classic format)."""
    os.makedirs(model_dir, exist_ok=True)
    for net in NETS:
        np.save(os.path.join(model_dir, CLASSIC_FILES[net]), weights[net], allow_pickle=True)
