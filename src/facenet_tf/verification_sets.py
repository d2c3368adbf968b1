"""Verification sets: one loader (`load_verification_set`) for a pairs file + aligned folder (the
classic LFW protocol) and for the `.bin` format of the insightface tools (lfw.bin, cfp_fp.bin,
agedb_30.bin), used by validate_on_lfw and by the per-epoch check of the training scripts.

A `.bin` file is a pickle of `(images, issame)`: a list of 2N encoded images (JPEG/PNG bytes, pair i
at positions 2i and 2i+1) and a list of N booleans. The folds are those of the file order (the
published sets list their pairs fold by fold, as LFW's pairs.txt). The file is unpickled with a
restricted loader that builds only plain containers, bytes, booleans and numpy arrays, so a `.bin`
cannot run code.
"""
import dataclasses
import os
import pickle
from typing import Optional

import numpy as np

from facenet_tf import pairs as pairs_io
from facenet_tf.errors import FaceNetError
from facenet_tf.images import ImageReadError
from facenet_tf.encoded_images import image_size

MAX_ENCODED_BYTES = 16 << 20  # one stored image (a 112 px face is about 10 KB)
_ARRAY_DTYPES = (np.dtype(np.uint8), np.dtype(np.bool_))  # image bytes as uint8, issame as bool


def _latin1_encode(text, encoding='latin1'):
    """`_codecs.encode` as protocol-2 pickles use it for bytes: only the latin-1 codec."""
    if not isinstance(text, str) or encoding.replace('-', '').lower() != 'latin1':
        raise pickle.UnpicklingError('refusing _codecs.encode(%s, %r)' % (type(text).__name__, encoding))
    return text.encode('latin-1')


def _bytearray(*args):
    """`bytearray` as protocol-2 pickles call it (text, 'latin-1'), or with bytes: never from a
    size (bytearray(n) would allocate what the file asks for)."""
    if not args:
        return b''
    if len(args) == 2 and isinstance(args[0], str):
        return _latin1_encode(*args)
    if len(args) == 1 and isinstance(args[0], (bytes, bytearray)):
        return bytes(args[0])
    raise pickle.UnpicklingError('refusing bytearray(%s)' % ', '.join(type(a).__name__ for a in args))


def _dtype(spec, *args):
    """numpy.dtype restricted to uint8 and bool: no object arrays."""
    dtype = np.dtype(spec) if isinstance(spec, str) and spec in ('u1', 'b1', '|u1', '|b1') else None
    if dtype not in _ARRAY_DTYPES:
        raise pickle.UnpicklingError('refusing numpy dtype %r' % (spec,))
    return dtype


def _frombuffer(buffer, dtype, shape, order):
    """The protocol-5 array constructor, for uint8 / bool arrays whose bytes the file holds."""
    if dtype not in _ARRAY_DTYPES:
        raise pickle.UnpicklingError('refusing numpy dtype %r' % (dtype,))
    return np.frombuffer(buffer, dtype).reshape(shape, order=order)


_ALLOWED = {
    ('_codecs', 'encode'): _latin1_encode,
    ('__builtin__', 'bytearray'): _bytearray, ('builtins', 'bytearray'): _bytearray,
    ('numpy', 'dtype'): _dtype,
    ('numpy', 'ndarray'): np.ndarray,
    ('numpy.core.multiarray', '_reconstruct'): None, ('numpy._core.multiarray', '_reconstruct'): None,
    ('numpy.core.multiarray', 'scalar'): None, ('numpy._core.multiarray', 'scalar'): None,
    ('numpy.core.numeric', '_frombuffer'): _frombuffer, ('numpy._core.numeric', '_frombuffer'): _frombuffer,
}


class _SafeUnpickler(pickle.Unpickler):
    """Builds only lists, tuples, bytes, str, numbers, booleans and uint8 / bool numpy arrays;
    any other global (a function, a class) is refused, so a `.bin` cannot run code."""

    def find_class(self, module, name):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError('refusing to load %s.%s' % (module, name))
        return _ALLOWED[module, name] or super().find_class(module, name)

    def persistent_load(self, pid):
        raise pickle.UnpicklingError('refusing a persistent id')


def _as_bytes(item):
    if isinstance(item, (bytes, bytearray)):
        return bytes(item)
    if isinstance(item, np.ndarray) and item.dtype == np.uint8 and item.ndim == 1:
        return item.tobytes()
    if isinstance(item, str):
        return item.encode('latin-1')
    raise TypeError('entry of type %s' % type(item).__name__)


def _images(path, bins):
    """The encoded images as bytes; each one checked: at most MAX_ENCODED_BYTES, and when it is an
    image, one whose header declares at most encoded_images.MAX_IMAGE_PIXELS (so no decoder allocates for
    a bomb; bytes that are no image are left to the decoder, which refuses them). An entry the file
    lists several times is converted once."""
    if not isinstance(bins, (list, tuple)):
        raise FaceNetError('%s: the images must be a list of encoded images, found %s'
                           % (path, type(bins).__name__))
    images, seen = [], {}
    for i, item in enumerate(bins):
        data = seen.get(id(item))
        if data is None:
            try:
                data = _as_bytes(item)
            except TypeError as e:
                raise FaceNetError('%s: image %d is not encoded image bytes (%s)' % (path, i, e))
            if len(data) > MAX_ENCODED_BYTES:
                raise FaceNetError('%s: image %d is %d bytes, more than %d'
                                   % (path, i, len(data), MAX_ENCODED_BYTES))
            try:
                image_size(data, strict=False)
            except ImageReadError as e:
                raise FaceNetError('%s: image %d: %s' % (path, i, e))
            seen[id(item)] = data
        images.append(data)
    return images


def _issame(path, issame):
    if isinstance(issame, np.ndarray):
        ok = issame.dtype == np.bool_
    else:
        ok = isinstance(issame, (list, tuple)) and all(isinstance(x, (bool, np.bool_)) for x in issame)
    if not ok:
        raise FaceNetError('%s: issame must be a list of booleans' % path)
    return np.asarray(issame, dtype=bool).reshape(-1)


def read_bin(path):
    """(encoded images: list of bytes, issame: bool array) of a `.bin` verification set. (A length
    the pickle declares beyond the file's end is read in chunks by the unpickler and fails as
    truncated, without allocating it.)"""
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
    issame = _issame(path, issame)
    if len(bins) != 2 * issame.size or issame.size == 0:
        raise FaceNetError('%s holds %d images for %d pairs (need exactly two per pair)'
                           % (path, len(bins), issame.size))
    return _images(path, bins), issame


def write_bin(path, images, issame):
    """Write encoded images (pair order) and their issame flags as a `.bin` verification set."""
    with open(path, 'wb') as f:
        pickle.dump((list(images), [bool(x) for x in issame]), f, protocol=pickle.HIGHEST_PROTOCOL)



ALIGN_HINT = ('align LFW first: python src/align/align_dataset_mtcnn.py <lfw> <lfw_aligned> '
              '--image_size 160 --margin 32')


@dataclasses.dataclass(eq=False)
class VerificationSet:
    """A verification set ready to embed: its distinct images (paths, or encoded images of a .bin),
    where each pair side is among them (pair i: where[2i], where[2i + 1]), issame per pair and the
    folds. Each distinct image is embedded once, whatever the number of pairs naming it."""
    name: str
    items: list                     # distinct image paths, or encoded images (bytes) when `encoded`
    where: np.ndarray               # int64 [2 * pairs]: index of each pair side in items
    issame: np.ndarray              # bool [pairs]
    folds: Optional[list]           # test pair indices of each fold; None: file order, unshuffled K-fold
    encoded: bool
    description: str                # '<source>: <n> pairs', for the log
    skipped: int = 0                # pairs left out because an image is missing (pairs files only)


def load_verification_set(source, pairs_file=None, nrof_folds=10, name='lfw', listed=None, log=pairs_io.note):
    """The VerificationSet of `source`: a `.bin` file (read_bin; its folds are the file order), or a
    folder of aligned faces read against `pairs_file` (pairs.read_pairs; the pairs with a missing
    image are skipped and counted, as the classic tools do; View 1 files get balanced folds). With
    `listed` (the relative paths of an embeddings file) the pair images are looked up in that list,
    not on disk, and the items are those relative paths."""
    from facenet_tf.embedding import unique_items
    path = os.path.expanduser(source)
    if listed is None and os.path.isfile(path):
        images, issame = read_bin(path)
        _check_folds(source, issame, nrof_folds)
        items, where = unique_items(images)
        return VerificationSet(name, items, where, issame, None, True, '%s: %d pairs' % (source, issame.size))
    if listed is None and not os.path.isdir(path):
        raise FaceNetError('LFW folder or .bin file not found: %s' % source)
    pair_list = pairs_io.read_pairs(pairs_file)
    paths, issame, skipped = pairs_io.get_paths_and_skipped(path, pair_list, listed)
    if skipped:
        log('Skipped %d image pairs' % len(skipped))
    if not issame:
        raise FaceNetError('none of the %d pairs of %s has both images in %s (expected <Name>/<Name>_NNNN.png '
                           'or .jpg; %s)' % (len(pair_list), pairs_file, source, ALIGN_HINT))
    issame = np.asarray(issame, bool)
    _check_folds(pairs_file, issame, nrof_folds)
    items, where = unique_items(paths)
    return VerificationSet(name, items, where, issame, pairs_io.pair_folds(pairs_file, issame, nrof_folds), False,
                           '%s: %d pairs' % (pairs_file, issame.size), len(skipped))


def _check_folds(source, issame, nrof_folds):
    if issame.size < nrof_folds:
        raise FaceNetError('%s: %d pairs cannot be split into %d folds' % (source, issame.size, nrof_folds))
