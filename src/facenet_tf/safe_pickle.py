"""Restricted unpickling of classifier files: only what classifier.py writes, with bounded memory.

Classifier files are pickles (the classic `(model, class_names)` format) and travel between
machines; a plain `pickle.load` of a file from elsewhere runs whatever callable the file names and
allocates whatever a few bytes ask for (`bytearray(3 << 30)`, an array of a huge shape). classifier.py
writes one estimator, `sklearn.svm.SVC`, and `load` admits exactly what its pickle needs, at every
pickle protocol (0-5):
- the class `sklearn.svm.SVC`, created empty (`object.__new__` or NEWOBJ without arguments) and
  filled from a dict of attributes;
- NumPy arrays (`_reconstruct` of an empty array then its state, or protocol 5's `_frombuffer`),
  dtypes and scalars, never of the object dtype, and only when the raw bytes in the file are exactly
  the declared shape times the item size (so an array costs what the file holds);
- `_codecs.encode(text, 'latin1')` (bytes in protocols 0-2) and `copyreg._reconstructor(cls,
  object, None)` (protocol 0); `builtins.object` as its argument;
- lists, dicts, tuples, sets and plain values built by pickle's own opcodes.
Anything else (os.system, subprocess.Popen, builtins.eval, other estimators, bytearray(n), ...)
stops the load with `RefusedClass` naming it, before it is called. The whole file is read first
(at most MAX_FILE_BYTES), so no length declared in it makes the reader allocate more than the file.
The unpickled model's content is checked by facenet_tf.classify before use.
"""
import _compat_pickle
import io
import math
import pickle

import numpy as np
from sklearn.svm import SVC

MAX_FILE_BYTES = 1 << 30   # 1 GiB: the training embeddings of two million 128-D faces
ARRAY_MODULES = ('numpy.core.multiarray', 'numpy._core.multiarray')


class RefusedClass(pickle.UnpicklingError):
    """The pickle names or calls something a classifier file does not hold; `name` says what."""

    def __init__(self, module, name, why='a classifier file holds only a scikit-learn SVC, '
                                         'NumPy arrays and builtins'):
        self.name = '%s.%s' % (module, name) if module else name
        super().__init__('refused to load %s: %s' % (self.name, why))


class BadContent(pickle.UnpicklingError):
    """An admitted constructor got arguments that are not what NumPy or pickle itself writes."""


def _plain_dtype(dtype):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise BadContent('an array of Python objects (only numeric arrays are admitted)')
    return dtype


def _nbytes(shape, dtype):
    if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)):
        raise BadContent('an array shape that is not a tuple of sizes: %r' % (shape,))
    return math.prod(shape) * dtype.itemsize


def _reconstruct(subtype, shape, dtype):
    """numpy's `_reconstruct(ndarray, (0,), b'b')`: an empty array, filled by its state."""
    if subtype is not np.ndarray or shape != (0,):
        raise BadContent('an array reconstruction other than the empty one NumPy writes')
    return np.empty((0,), np.int8)


def _scalar(dtype, data=None):
    _plain_dtype(dtype)
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise BadContent('a NumPy scalar whose bytes are not one %s' % dtype)
    return np.frombuffer(data, dtype)[0]


def _frombuffer(buf, dtype, shape, order):
    _plain_dtype(dtype)
    size = memoryview(buf).nbytes
    if _nbytes(shape, dtype) != size or order not in ('C', 'F'):
        raise BadContent('an array of shape %r whose data is %d bytes' % (shape, size))
    return np.frombuffer(buf, dtype).reshape(shape, order=order)


def _dtype(spec, align=False, copy=False):
    if not isinstance(spec, str):
        raise BadContent('a dtype that is not named by a string')
    return _plain_dtype(np.dtype(spec, align, copy))


def _encode(text, encoding='utf-8'):
    if not isinstance(text, str) or encoding not in ('latin1', 'latin-1'):
        raise BadContent('bytes encoded other than as latin1 text')
    return text.encode('latin1')


def _reconstructor(cls, base, state):
    if cls is not SVC or base is not object or state is not None:
        raise BadContent('an object reconstruction other than an empty SVC')
    return object.__new__(cls)


GLOBALS = {('sklearn.svm._classes', 'SVC'): SVC, ('sklearn.svm', 'SVC'): SVC,
           ('numpy', 'ndarray'): np.ndarray, ('numpy', 'dtype'): _dtype,
           ('_codecs', 'encode'): _encode, ('copyreg', '_reconstructor'): _reconstructor,
           ('builtins', 'object'): object}
for _module in ARRAY_MODULES:
    GLOBALS.update({(_module, '_reconstruct'): _reconstruct, (_module, 'scalar'): _scalar})
    GLOBALS[(_module.replace('multiarray', 'numeric'), '_frombuffer')] = _frombuffer
CALLABLE = (_dtype, _encode, _reconstructor, _reconstruct, _scalar, _frombuffer)


def _check_array_state(state):
    """An ndarray's pickled state (version, shape, dtype, is_fortran, raw bytes): numeric, and the
    raw bytes exactly the declared size (so setting it allocates no more than the file holds)."""
    if not (isinstance(state, tuple) and len(state) in (4, 5)):
        raise BadContent('an array state that NumPy does not write')
    shape, dtype, _, raw = state[-4:]
    _plain_dtype(dtype)
    if not isinstance(raw, (bytes, str)) or len(raw) != _nbytes(shape, dtype):
        raise BadContent('an array of shape %r whose data is not %d bytes' % (shape, _nbytes(shape, dtype)))


class RestrictedUnpickler(pickle._Unpickler):
    """pickle's Python unpickler with find_class, calls, object creation and state setting limited
    to what the module docstring describes."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def find_class(self, module, name):
        key = _compat_pickle.NAME_MAPPING.get(
            (module, name), (_compat_pickle.IMPORT_MAPPING.get(module, module), name))
        if key not in GLOBALS:
            raise RefusedClass(*key)
        return GLOBALS[key]

    def _call(self, func, args):
        if not any(func is f for f in CALLABLE):
            raise RefusedClass('', 'a call of %s' % getattr(func, '__name__', type(func).__name__),
                               'a classifier file calls only the NumPy and pickle reconstructors')
        if not isinstance(args, tuple):
            raise BadContent('call arguments that are not a tuple')
        return func(*args)

    def load_reduce(self):
        args = self.stack.pop()
        self.stack[-1] = self._call(self.stack[-1], args)
    dispatch[pickle.REDUCE[0]] = load_reduce

    def _instantiate(self, klass, args):
        self.append(self._call(klass, tuple(args)))

    def _new(self, cls, args, kwargs):
        if cls is not SVC or args or kwargs:
            raise RefusedClass('', 'a new %s' % getattr(cls, '__name__', type(cls).__name__),
                               'a classifier file creates only an empty SVC')
        return SVC.__new__(SVC)

    def load_newobj(self):
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._new(cls, args, {}))
    dispatch[pickle.NEWOBJ[0]] = load_newobj

    def load_newobj_ex(self):
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._new(cls, args, kwargs))
    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex

    def load_build(self):
        state, inst = self.stack[-1], self.stack[-2]
        if type(inst) is np.ndarray:
            if inst.size:
                raise BadContent('an array whose state is set twice')
            _check_array_state(state)
        elif type(inst) is SVC:
            if not (isinstance(state, dict) and all(type(k) is str for k in state)):
                raise BadContent('an SVC whose state is not a dict of attributes')
        elif not isinstance(inst, np.dtype):
            raise BadContent('state set on a %s' % type(inst).__name__)
        pickle._Unpickler.load_build(self)
        if isinstance(inst, np.dtype):
            _plain_dtype(inst)
    dispatch[pickle.BUILD[0]] = load_build


def load(f, max_bytes=MAX_FILE_BYTES):
    """Unpickle one object from the binary file object f (a regular file of at most max_bytes)."""
    blocks, size = [], 0
    for block in iter(lambda: f.read(1 << 20), b''):  # read(n) of a large n would allocate n first
        size += len(block)
        if size > max_bytes:
            raise BadContent('more than %d bytes, more than a classifier file holds' % max_bytes)
        blocks.append(block)
    return RestrictedUnpickler(io.BytesIO(b''.join(blocks))).load()
