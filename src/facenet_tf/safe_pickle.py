"""Restricted unpickling of classifier files: only scikit-learn estimators, NumPy arrays and builtins.

Classifier files are pickles (the classic `(model, class_names)` format) and travel between
machines; a plain `pickle.load` of a file from elsewhere runs whatever callable the file names.
`load` admits only what a fitted classic estimator needs:
- scikit-learn classes (estimators, their Cython trees and distance metrics, optimisers) and the
  `newObj` constructors of its Cython types; never a function, never a dotted (nested) name,
  never its test helpers;
- NumPy array, dtype and scalar reconstruction, and NumPy's random-state constructors;
- plain builtin types (list, dict, tuple, str, ...) and the reconstructor of old protocols.
Anything else (os.system, subprocess.Popen, builtins.eval, ...) stops the load with
`RefusedClass` naming it, before it is called.
"""
import _compat_pickle
import pickle

ALLOWED_GLOBALS = {
    ('numpy', 'ndarray'), ('numpy', 'dtype'),
    ('numpy.core.multiarray', '_reconstruct'), ('numpy._core.multiarray', '_reconstruct'),
    ('numpy.core.multiarray', 'scalar'), ('numpy._core.multiarray', 'scalar'),
    ('numpy.core.numeric', '_frombuffer'), ('numpy._core.numeric', '_frombuffer'),
    ('numpy.random._pickle', '__randomstate_ctor'), ('numpy.random._pickle', '__generator_ctor'),
    ('numpy.random._pickle', '__bit_generator_ctor'),
    ('numpy.random._mt19937', 'MT19937'), ('numpy.random._pcg64', 'PCG64'),
    ('numpy.random.bit_generator', 'SeedSequence'),
    ('numpy.random.bit_generator', '__pyx_unpickle_SeedSequence'),
    ('_codecs', 'encode'),
    ('copyreg', '_reconstructor'),
}
BUILTIN_TYPES = ('object', 'list', 'dict', 'tuple', 'set', 'frozenset', 'str', 'bytes', 'bytearray',
                 'int', 'float', 'complex', 'bool', 'slice')
ALLOWED_GLOBALS.update(('builtins', name) for name in BUILTIN_TYPES)
SKLEARN_CONSTRUCTORS = ('newObj',)   # module-level `newObj(cls)` of scikit-learn's Cython types
SKLEARN_EXCLUDED = ('._testing', '.tests', '.externals')


class RefusedClass(pickle.UnpicklingError):
    """The pickle names a global that a classifier file does not need; `name` is 'module.name'."""

    def __init__(self, module, name):
        self.name = '%s.%s' % (module, name)
        super().__init__('refused to load %s: a classifier file holds only scikit-learn estimators, '
                         'NumPy arrays and builtins' % self.name)


def _is_sklearn_module(module):
    return (module == 'sklearn' or module.startswith('sklearn.')) and \
        not any(part in module for part in SKLEARN_EXCLUDED)


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler whose find_class admits only the globals described in the module docstring."""

    def find_class(self, module, name):
        original = module, name
        # Python 2 names of old protocols, read as pickle itself maps them (e.g. __builtin__ -> builtins)
        module, name = _compat_pickle.NAME_MAPPING.get(
            original, (_compat_pickle.IMPORT_MAPPING.get(module, module), name))
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(*original)
        if _is_sklearn_module(module) and name.isidentifier():
            obj = super().find_class(*original)
            if isinstance(obj, type) and _is_sklearn_module(getattr(obj, '__module__', '')):
                return obj
            if name in SKLEARN_CONSTRUCTORS and callable(obj):
                return obj
        raise RefusedClass(module, name)


def load(f):
    """Unpickle one object from the binary file object f with RestrictedUnpickler."""
    return RestrictedUnpickler(f).load()
