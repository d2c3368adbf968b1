"""Published Keras FaceNet weights (HDF5) to a classic model folder.

The widely used `facenet_keras.h5` (a Keras 2 port of the classic model 20170512-110547,
InceptionResnetV1 with a 128-D bottleneck) names its layers after the classic variables, flattened:
`Block35_3_Branch_1_Conv2d_0a_1x1/kernel:0` is `InceptionResnetV1/Repeat/block35_3/Branch_1/
Conv2d_0a_1x1/weights`, `..._BatchNorm/moving_mean:0` is `.../BatchNorm/moving_mean`, and the last,
unrepeated Block8 is `Block8_6`. Only the weight arrays are read, with h5py: the file's model config
holds Python bytecode (its Lambda layers) that is never looked at, let alone run.
"""
import os
import re
import shutil

import numpy as np

from facenet_tf.errors import FaceNetError
from facenet_tf.tf_setup import configure

SCOPE = 'InceptionResnetV1'
# Keras layer-name prefix -> classic scope; the final Block8 (scale 1, no ReLU) is not repeated.
_BLOCKS = (
    (re.compile(r'^Block35_(\d+)_'), lambda n: 'Repeat/block35_%s/' % n),
    (re.compile(r'^Block17_(\d+)_'), lambda n: 'Repeat_1/block17_%s/' % n),
    (re.compile(r'^Block8_6_'), lambda n: 'Block8/'),
    (re.compile(r'^Block8_(\d+)_'), lambda n: 'Repeat_2/block8_%s/' % n),
    (re.compile(r'^Mixed_(6a|7a)_'), lambda n: 'Mixed_%s/' % n),
)
_BRANCH = re.compile(r'^Branch_(\d+)_')
_WEIGHTS = {'kernel': 'weights', 'bias': 'biases'}
_BATCH_NORM = ('beta', 'moving_mean', 'moving_variance')


def classic_name(keras_name):
    """The classic variable name of a Keras weight name (`layer/weight:0`), or None when the name
    is not one of the published layout's."""
    layer, _, weight = keras_name.partition('/')
    weight = weight.split(':')[0]
    if layer.endswith('_BatchNorm'):
        if weight not in _BATCH_NORM:
            return None
        layer, weight = layer[:-len('_BatchNorm')], 'BatchNorm/' + weight
    elif weight in _WEIGHTS:
        weight = _WEIGHTS[weight]
    else:
        return None
    scope = ''
    for pattern, scope_of in _BLOCKS:
        m = pattern.match(layer)
        if m:
            scope = scope_of(m.group(1) if m.groups() else None)
            layer = layer[m.end():]
            break
    m = _BRANCH.match(layer)
    if m:
        scope += 'Branch_%s/' % m.group(1)
        layer = layer[m.end():]
    if not re.match(r'^(Conv2d_\w+|Bottleneck)$', layer):
        return None
    return '%s/%s%s/%s' % (SCOPE, scope, layer, weight)


def _text(value):
    return value.decode('utf8') if isinstance(value, bytes) else str(value)


def read_keras_weights(path):
    """({Keras weight name: float32 array}, input size) of a Keras HDF5 model or weights file, read
    with h5py in one pass."""
    import h5py
    if not os.path.isfile(path):
        raise FaceNetError('Keras model file not found: %s' % path)
    try:
        f = h5py.File(path, 'r')
    except OSError:
        raise FaceNetError('%s is not an HDF5 file (expected a Keras .h5 model such as facenet_keras.h5)' % path)
    with f:
        root = f['model_weights'] if 'model_weights' in f else f
        if 'layer_names' not in root.attrs:
            raise FaceNetError('%s holds no Keras layer weights (no layer_names attribute)' % path)
        weights = {}
        for layer in root.attrs['layer_names']:
            group = root[_text(layer)]
            for name in group.attrs.get('weight_names', []):
                name = _text(name)
                if name in weights:
                    raise FaceNetError('%s: weight %s appears twice' % (path, name))
                weights[name] = np.asarray(group[name], dtype=np.float32)
        size = _input_size(f.attrs.get('model_config'))
    if not weights:
        raise FaceNetError('%s holds no weights' % path)
    return weights, size


def _input_size(config, default=160):
    """The square input size of the Keras model's input layer, read from its JSON config (only the
    shape field), or `default` when the file has no model config."""
    import json
    if config is None:
        return default
    try:
        layers = json.loads(_text(config))['config']['layers']
        shape = next(l['config']['batch_input_shape'] for l in layers if l['class_name'] == 'InputLayer')
        return int(shape[1])
    except (ValueError, KeyError, TypeError, StopIteration, IndexError):
        return default


def _listed(names, limit=3):
    names = sorted(names)
    more = ' and %d more' % (len(names) - limit) if len(names) > limit else ''
    return ', '.join(names[:limit]) + more


def classic_weights(keras_weights, path='the file'):
    """{classic variable name: array}; a one-line error for any weight that has no classic name."""
    mapped, unknown = {}, []
    for name, value in keras_weights.items():
        target = classic_name(name)
        if target is None:
            unknown.append(name)
        else:
            mapped[target] = value
    if unknown:
        raise FaceNetError('%s is not a published FaceNet Keras model: %d weight%s with unknown layer names '
                        '(%s)' % (path, len(unknown), '' if len(unknown) == 1 else 's', _listed(unknown)))
    return mapped


def embedding_size(weights, path='the file'):
    """The bottleneck width (embedding size) of classic-named weights."""
    kernel = weights.get(SCOPE + '/Bottleneck/weights')
    if kernel is None or kernel.ndim != 2:
        raise FaceNetError('%s has no Bottleneck/kernel weight (the embedding layer)' % path)
    return int(kernel.shape[1])


def check_complete(weights, variables, path='the file'):
    """Every variable gets exactly one weight of its shape and every weight a variable: else a
    one-line error naming what is missing, left over or of the wrong shape."""
    shapes = {v.op.name: tuple(v.shape.as_list()) for v in variables}
    missing = sorted(set(shapes) - set(weights))
    if missing:
        raise FaceNetError('%s lacks %d of the network\'s %d weights (%s)'
                        % (path, len(missing), len(shapes), _listed(missing)))
    extra = sorted(set(weights) - set(shapes))
    if extra:
        raise FaceNetError('%s has %d weight%s the network does not have (%s)'
                        % (path, len(extra), '' if len(extra) == 1 else 's', _listed(extra)))
    wrong = ['%s: %s in the file, %s in the network' % (name, tuple(weights[name].shape), shapes[name])
             for name in sorted(shapes) if tuple(weights[name].shape) != shapes[name]]
    if wrong:
        raise FaceNetError('%s: wrong shape for %d weight%s (%s)'
                        % (path, len(wrong), '' if len(wrong) == 1 else 's', _listed(wrong, 1)))


def build_classic_graph(network, bottleneck, image_size, keep_probability=0.8):
    """The inference graph with the classic tensor names: `image_batch` (placeholder) -> `input` ->
    network -> `embeddings` (L2-normalised), with the `phase_train` and `label_batch` placeholders
    that the classic tools map or feed. Returns the embeddings tensor."""
    tf = configure()
    tf1 = tf.compat.v1
    image_batch = tf1.placeholder(tf.float32, [None, image_size, image_size, 3], name='image_batch')
    images = tf.identity(image_batch, 'input')
    tf1.placeholder(tf.int32, [None], name='label_batch')
    phase_train = tf1.placeholder(tf.bool, name='phase_train')
    prelogits, _ = network.inference(images, keep_probability, phase_train=phase_train,
                                     bottleneck_layer_size=bottleneck)
    return tf.nn.l2_normalize(prelogits, 1, 1e-10, name='embeddings')


def load_weights(sess, weights):
    """Set each global variable of the session's graph to its weight (through its initializer's
    input, so no constant is added to the graph), all in one session run: a run per variable
    builds an executor per variable and took minutes for the 490 of InceptionResnetV1."""
    tf = configure()
    variables = tf.compat.v1.global_variables()
    sess.run([var.initializer for var in variables],
             {var.initializer.inputs[1]: weights[var.op.name] for var in variables})


def _prepare_folder(model_dir):
    """A fresh temporary folder beside model_dir; model_dir itself must be absent or empty."""
    model_dir = os.path.abspath(os.path.expanduser(model_dir))
    if os.path.exists(model_dir) and (not os.path.isdir(model_dir) or os.listdir(model_dir)):
        raise FaceNetError('%s already exists and is not an empty folder (give a new model folder)' % model_dir)
    tmp = model_dir + '.importing'
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    return model_dir, tmp


def import_model(h5_file, model_dir, network, model_name, pb_file=None, log=print):
    """Write the Keras weights of `h5_file` as the classic folder `model_dir` (`model-<name>.meta`,
    `model-<name>.ckpt-0`, `checkpoint`) and, with pb_file, as a frozen graph. The folder appears
    complete or not at all. Returns (number of variables, embedding size)."""
    tf = configure()
    from facenet_tf import model_io
    tf1 = tf.compat.v1
    keras_weights, image_size = read_keras_weights(h5_file)
    weights = classic_weights(keras_weights, h5_file)
    bottleneck = embedding_size(weights, h5_file)
    log('read %d weights from %s (embedding size %d, input %dx%d)'
        % (len(weights), h5_file, bottleneck, image_size, image_size))
    model_dir, tmp = _prepare_folder(model_dir)
    try:
        with tf1.Graph().as_default():
            build_classic_graph(network, bottleneck, image_size)
            variables = tf1.global_variables()
            check_complete(weights, variables, h5_file)
            with tf1.Session() as sess:
                load_weights(sess, weights)
                saver = tf1.train.Saver(variables, save_relative_paths=True)
                model_io.save_variables_and_metagraph(sess, saver, None, tmp, model_name, 0)
                frozen = model_io.freeze_session(sess) if pb_file else None
        if frozen is not None:
            model_io.write_graph_def(frozen, pb_file)
            log('wrote %s (%d ops)' % (pb_file, len(frozen.node)))
        if os.path.isdir(model_dir):
            os.rmdir(model_dir)
        os.rename(tmp, model_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log('wrote %s: model-%s.meta, model-%s.ckpt-0 (%d variables)' % (model_dir, model_name, model_name,
                                                                     len(variables)))
    return len(variables), bottleneck
