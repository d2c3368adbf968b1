"""A `.pb` or checkpoint folder converted once to ONNX and kept in the cache, so that onnxruntime runs
the TensorFlow models the tools are given (`--backend onnx`, runtimes.open_model).

`cached_onnx(model, image_size, use_moving_averages)` returns <cache>/onnx/<digest>.onnx (<cache>:
pretrained.cache_dir(), $FACENET_TF_HOME or ~/.cache/facenet-tf1compat), converted by
export_onnx.export_onnx on first use, with one note on stderr, and reused after. The digest is a
sha256 over the model's bytes (a .pb; a folder's .meta and the files of the checkpoint it restores,
with their names), the image size, use_moving_averages, the opset, CONVERSION_VERSION and tf2onnx's
version, so another model, setting or converter never reuses a stale file. The model is hashed again
after the conversion: a model changed meanwhile leaves no file. The file is written under a
temporary name and renamed, so concurrent first uses each write a whole file; nothing is written
outside <cache>/onnx. The model's files are at most runtimes.MAX_MODEL_BYTES in all (sizes checked before
reading), the bound of every model loader (docs/security.md); the cached file is then read and
checked by runtimes.OnnxEmbedder like any .onnx file.
"""
import hashlib
import os
import stat
import sys
import time

from facenet_tf import files
from facenet_tf.errors import FaceNetError

CONVERSION_VERSION = b'facenet-tf onnx cache 1: export_onnx fp32, input -> embeddings, free batch'
CHUNK = 1 << 20


def cache_root():
    """<cache>/onnx, where the converted models are kept."""
    from facenet_tf.pretrained import cache_dir
    return os.path.join(cache_dir(), 'onnx')


def model_files(model):
    """[(name, path)] of the files a conversion reads: a .pb (name ''); a folder's .meta, then the
    files of the checkpoint it restores (model_io.get_model_filenames), by name. Regular files of at
    most runtimes.MAX_MODEL_BYTES in all, else a one-line FaceNetError."""
    from facenet_tf import model_io
    from facenet_tf.runtimes import MAX_MODEL_BYTES
    path = os.path.expanduser(model)
    if os.path.isdir(path):
        meta, checkpoint = model_io.get_model_filenames(path)
        names = [meta] + sorted(n for n in os.listdir(path) if n.startswith(checkpoint + '.') and n != meta)
        found = [(name, os.path.join(path, name)) for name in names]
    elif os.path.isfile(path):
        model_io.check_model_file(path)
        found = [('', path)]
    else:
        raise model_io.model_not_found(model)
    total = 0
    for name, file_path in found:
        info = os.stat(file_path)
        if not stat.S_ISREG(info.st_mode):
            raise FaceNetError('%s: not a regular file' % file_path)
        total += info.st_size
    if total > MAX_MODEL_BYTES:
        raise FaceNetError('%s: %d bytes, more than the %d a model converted to ONNX may hold'
                           % (model, total, MAX_MODEL_BYTES))
    return found


def model_digest(model, image_size=160, use_moving_averages=False, opset=None):
    """Hex sha256 of what a conversion depends on (see the module doc)."""
    from facenet_tf import export_onnx
    tf2onnx = export_onnx.require('tf2onnx')
    digest = hashlib.sha256(CONVERSION_VERSION)
    digest.update(('\nimage_size %d\nmoving averages %s\nopset %d\ntf2onnx %s\n'
                   % (image_size, bool(use_moving_averages), opset or export_onnx.DEFAULT_OPSET,
                      tf2onnx.__version__)).encode())
    for name, path in model_files(model):
        digest.update(('%s %d\n' % (name, os.path.getsize(path))).encode())
        with open(path, 'rb') as f:
            for block in iter(lambda: f.read(CHUNK), b''):
                digest.update(block)
    return digest.hexdigest()


def cached_path(model, image_size=160, use_moving_averages=False, opset=None):
    """Where the conversion of `model` with these settings is kept (it may not exist yet)."""
    return os.path.join(cache_root(), model_digest(model, image_size, use_moving_averages, opset)[:32] + '.onnx')


def cached_onnx(model, image_size=160, use_moving_averages=False, opset=None):
    """The path of `model` (a .pb or checkpoint folder) converted to ONNX, converted into the cache
    on first use (fp32; input `input` [N, S, S, 3], output `embeddings` [N, D])."""
    from facenet_tf import export_onnx
    opset = opset or export_onnx.DEFAULT_OPSET
    target = cached_path(model, image_size, use_moving_averages, opset)
    if os.path.isfile(target):
        return target
    print('converting %s to ONNX once (cached in %s)' % (model, target), file=sys.stderr, flush=True)
    start = time.time()
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with files.atomic_path(target) as temporary:
        export_onnx.export_onnx(model, temporary, image_size, opset, use_moving_averages)
        if cached_path(model, image_size, use_moving_averages, opset) != target:
            raise FaceNetError('%s changed while it was converted to ONNX: run again' % model)
    print('converted to ONNX in %.1f s' % (time.time() - start), file=sys.stderr, flush=True)
    return target
