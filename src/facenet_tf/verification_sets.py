"""Verification sets in the `.bin` format of the insightface tools (lfw.bin, cfp_fp.bin, agedb_30.bin).

A `.bin` file is a pickle of `(images, issame)`: a list of 2N encoded images (JPEG/PNG bytes, pair i
at positions 2i and 2i+1) and a list of N booleans. The folds are those of the file order (the
published sets list their pairs fold by fold, as LFW's pairs.txt). The file is unpickled with a
restricted loader that builds only plain containers, bytes, booleans and numpy arrays, so a `.bin`
cannot run code.
"""
import pickle

import numpy as np

from facenet_tf.errors import FaceNetError

_ALLOWED = {
    ('_codecs', 'encode'),
    ('numpy', 'ndarray'), ('numpy', 'dtype'),
    ('numpy.core.multiarray', '_reconstruct'), ('numpy._core.multiarray', '_reconstruct'),
    ('numpy.core.multiarray', 'scalar'), ('numpy._core.multiarray', 'scalar'),
    ('__builtin__', 'bytearray'), ('builtins', 'bytearray'),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError('refusing to load %s.%s' % (module, name))
        return super().find_class(module, name)


def _as_bytes(item):
    if isinstance(item, (bytes, bytearray)):
        return bytes(item)
    if isinstance(item, np.ndarray) and item.dtype == np.uint8 and item.ndim == 1:
        return item.tobytes()
    if isinstance(item, str):
        return item.encode('latin-1')
    raise TypeError(type(item).__name__)


def read_bin(path):
    """(encoded images: list of bytes, issame: bool array) of a `.bin` verification set."""
    try:
        with open(path, 'rb') as f:
            content = _SafeUnpickler(f, encoding='bytes').load()
    except OSError as e:
        raise FaceNetError('cannot read %s: %s' % (path, e.strerror or e))
    except Exception as e:  # any unpickling failure means "not a .bin set"
        raise FaceNetError('%s is not a verification set (.bin: a pickle of (images, issame)): %s'
                        % (path, str(e).splitlines()[0] if str(e) else type(e).__name__))
    if not (isinstance(content, (tuple, list)) and len(content) == 2):
        raise FaceNetError('%s is not a verification set: expected a pickled (images, issame) pair' % path)
    bins, issame = content
    try:
        images = [_as_bytes(b) for b in bins]
        issame = np.asarray(issame, dtype=bool).reshape(-1)
    except (TypeError, ValueError) as e:
        raise FaceNetError('%s: the images must be encoded image bytes and issame booleans (%s)' % (path, e))
    if len(images) != 2 * issame.size or issame.size == 0:
        raise FaceNetError('%s holds %d images for %d pairs (need exactly two per pair)'
                        % (path, len(images), issame.size))
    return images, issame


def write_bin(path, images, issame):
    """Write encoded images (pair order) and their issame flags as a `.bin` verification set."""
    with open(path, 'wb') as f:
        pickle.dump((list(images), [bool(x) for x in issame]), f, protocol=pickle.HIGHEST_PROTOCOL)

