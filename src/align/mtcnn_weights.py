"""MTCNN weights in the classic layout, read from the packaged files or from det1/det2/det3.npy.

The classic layout is one dict per network: layer name -> {'weights', 'biases'} or {'alpha'}, with
convolution kernels laid out for the transposed (width-first) images the networks are fed with.
The `mtcnn` wheel ships the same arrays as flat lists (joblib + lz4): kernels with height and width
swapped, PReLU alphas shaped (1, 1, C), in a fixed order given below.
"""
import importlib.util
import os

import numpy as np

from facenet_tf.errors import FaceNetError

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


def packaged_weights_dir():
    """Folder of the `mtcnn` wheel's weight files (found without importing that package)."""
    spec = importlib.util.find_spec('mtcnn')
    if spec is None or spec.origin is None:
        raise FaceNetError('the packaged MTCNN weights are missing: pip install mtcnn==1.0.0')
    return os.path.join(os.path.dirname(spec.origin), 'assets', 'weights')


def _from_packaged(net, arrays):
    """Flat packaged list -> classic dict (kernels' height/width swapped back, alphas flattened)."""
    order = _PACKAGED_ORDER[net]
    if len(arrays) != len(order):
        raise FaceNetError('%s weights: expected %d arrays, found %d' % (net, len(order), len(arrays)))
    layers = {}
    for (layer, param), arr in zip(order, arrays):
        arr = np.asarray(arr, dtype=np.float32)
        if param == 'weights' and arr.ndim == 4:
            arr = arr.transpose(1, 0, 2, 3)
        elif param == 'alpha':
            arr = arr.reshape(-1)
        layers.setdefault(layer, {})[param] = np.ascontiguousarray(arr)
    return layers


def load_packaged(weights_dir=None):
    """{net: classic dict} from the wheel's pnet/rnet/onet.lz4 files."""
    import joblib
    weights_dir = weights_dir or packaged_weights_dir()
    out = {}
    for net in NETS:
        path = os.path.join(weights_dir, net + '.lz4')
        if not os.path.isfile(path):
            raise FaceNetError('MTCNN weight file not found: %s' % path)
        out[net] = _from_packaged(net, joblib.load(path))
    return out


def load_classic(model_dir):
    """{net: classic dict} from a folder holding det1.npy, det2.npy and det3.npy."""
    out = {}
    for net in NETS:
        path = os.path.join(model_dir, CLASSIC_FILES[net])
        if not os.path.isfile(path):
            raise FaceNetError('MTCNN weight file not found: %s' % path)
        try:
            data = np.load(path, encoding='latin1', allow_pickle=True).item()
        except (OSError, ValueError, AttributeError) as e:
            raise FaceNetError('cannot read MTCNN weights %s: %s' % (path, e))
        out[net] = {layer: {k: np.asarray(v, dtype=np.float32) for k, v in params.items()}
                    for layer, params in data.items()}
        missing = {layer for layer, _ in _PACKAGED_ORDER[net]} - set(out[net])
        if missing:
            raise FaceNetError('%s lacks layers: %s' % (path, ', '.join(sorted(missing))))
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
