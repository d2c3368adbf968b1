"""Published Keras FaceNet weights (HDF5) to a classic model folder.

The widely used `facenet_keras.h5` (a Keras 2 port of the classic model 20170512-110547,
InceptionResnetV1 with a 128-D bottleneck) names its layers after the classic variables, flattened:
`Block35_3_Branch_1_Conv2d_0a_1x1/kernel:0` is `InceptionResnetV1/Repeat/block35_3/Branch_1/
Conv2d_0a_1x1/weights`, `..._BatchNorm/moving_mean:0` is `.../BatchNorm/moving_mean`, and the last,
unrepeated Block8 is `Block8_6`. Only the weight arrays are read, with h5py: the file's model config
holds Python bytecode (its Lambda layers) that is never looked at, let alone run.

The file may come from anywhere: only hard links inside it are followed (an external link opens
another file), a weight must be a float dataset stored in the file itself (external storage and
virtual datasets read other files), and every weight's declared shape is checked against the
network before any data is read, so memory is set by the network, not by the file.
"""
import os
import re
import shutil
import tempfile

import numpy as np

from facenet_tf.errors import FaceNetError
from facenet_tf.files import check_new_output, temporary_name
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


MAX_NAMES = 100000        # layer and weight names a file may list (the published one: 490 weights)
MAX_EMBEDDING_SIZE = 8192
MAX_IMAGE_SIZE = 4096
BUILTIN_FILTERS = (1, 2, 3, 4, 5, 6, 32000)   # deflate, shuffle, fletcher32, szip, nbit, scaleoffset, lzf


def open_h5(path):
    """The Keras HDF5 file `path` opened read-only with h5py (one-line errors for a missing file or
    one that is not HDF5)."""
    import h5py
    if not os.path.isfile(path):
        raise FaceNetError('Keras model file not found: %s' % path)
    try:
        return h5py.File(path, 'r')
    except OSError:
        raise FaceNetError('%s is not an HDF5 file (expected a Keras .h5 model such as facenet_keras.h5)' % path)


def _names(node, attr, path):
    """The list of names in attribute `attr` of an HDF5 group (a Keras layer_names / weight_names)."""
    try:
        values = np.asarray(node.attrs[attr]) if attr in node.attrs else np.empty(0, object)
    except (OSError, TypeError, ValueError) as e:
        raise FaceNetError('%s: unreadable %s attribute of %s (%s)' % (path, attr, node.name, type(e).__name__))
    if values.size == 0:
        return []
    if values.ndim != 1 or values.size > MAX_NAMES or values.dtype.kind not in 'SUO':
        raise FaceNetError('%s: the %s attribute of %s is not a list of names' % (path, attr, node.name))
    if not all(isinstance(v, (str, bytes)) for v in values.tolist()):
        raise FaceNetError('%s: the %s attribute of %s is not a list of names' % (path, attr, node.name))
    return [_text(v) for v in values]


def _member(group, name, path):
    """group[name] reached through hard links only: an external link (another file) or a soft link
    inside `name` is refused before it is followed."""
    import h5py
    node = group
    for part in name.split('/'):
        if part in ('', '.'):
            continue
        link = node.get(part, getlink=True) if isinstance(node, h5py.Group) else None
        if link is None:
            raise FaceNetError('%s: %s has no member %s' % (path, node.name, part))
        if not isinstance(link, h5py.HardLink):
            raise FaceNetError('%s: %s/%s is %s (refused: only data stored in this file is read)'
                               % (path, node.name.rstrip('/'), part,
                                  'an external link to %s' % link.filename if isinstance(link, h5py.ExternalLink)
                                  else 'a %s' % type(link).__name__))
        node = node[part]
    return node


def _weight_dataset(group, name, path):
    """The dataset of weight `name` in a layer group, checked before any of its data is read: a
    float array stored in this file (no external storage, no virtual dataset)."""
    import h5py
    dataset = _member(group, name, path)
    where = '%s: weight %s' % (path, name)
    if not isinstance(dataset, h5py.Dataset):
        raise FaceNetError('%s is a %s, not a dataset' % (where, type(dataset).__name__))
    if dataset.is_virtual:
        raise FaceNetError('%s is a virtual dataset (refused: it reads other files)' % where)
    if dataset.external:
        raise FaceNetError('%s has external storage in %s (refused: only data stored in this file is read)'
                           % (where, _text(dataset.external[0][0])))
    filters = dataset.id.get_create_plist()
    for i in range(filters.get_nfilters()):
        code = filters.get_filter(i)[0]
        if code not in BUILTIN_FILTERS:
            raise FaceNetError('%s needs HDF5 filter %d (refused: only built-in filters, no filter plugin is '
                               'loaded)' % (where, code))
    if dataset.dtype.kind != 'f' or dataset.dtype.fields is not None or dataset.dtype.subdtype is not None:
        raise FaceNetError('%s has type %s, not float' % (where, dataset.dtype))
    if dataset.shape is None:
        raise FaceNetError('%s has no shape' % where)
    return dataset


def keras_weight_datasets(f, path):
    """{Keras weight name: h5py dataset} of an open Keras HDF5 model or weights file, every dataset
    checked (links, storage, type) but none read."""
    import h5py
    root = _member(f, 'model_weights', path) if 'model_weights' in f else f
    if not isinstance(root, h5py.Group) or 'layer_names' not in root.attrs:
        raise FaceNetError('%s holds no Keras layer weights (no layer_names attribute)' % path)
    datasets = {}
    for layer in _names(root, 'layer_names', path):
        group = _member(root, layer, path)
        if not isinstance(group, h5py.Group):
            raise FaceNetError('%s: layer %s is a %s, not a group' % (path, layer, type(group).__name__))
        for name in _names(group, 'weight_names', path):
            if name in datasets:
                raise FaceNetError('%s: weight %s appears twice' % (path, name))
            datasets[name] = _weight_dataset(group, name, path)
    if not datasets:
        raise FaceNetError('%s holds no weights' % path)
    return datasets


def read_dataset(dataset, shape, path):
    """The float32 data of a checked dataset whose shape must be `shape` (checked before reading)."""
    if tuple(dataset.shape) != tuple(shape):
        raise FaceNetError('%s: %s has shape %s, expected %s' % (path, dataset.name, dataset.shape, tuple(shape)))
    try:
        return np.asarray(dataset[()], dtype=np.float32).reshape(shape)
    except (OSError, ValueError, TypeError) as e:
        raise FaceNetError('%s: cannot read %s (%s)' % (path, dataset.name, (str(e).splitlines() or [''])[0]))


def read_keras_weights(path):
    """({Keras weight name: float32 array}, input size) of a Keras HDF5 model or weights file, read
    with h5py in one pass (every dataset checked as in keras_weight_datasets)."""
    with open_h5(path) as f:
        weights = {name: read_dataset(d, d.shape, path) for name, d in keras_weight_datasets(f, path).items()}
        size = input_size(f, path)
    return weights, size


def input_size(f, path, default=160):
    """The square input size of the Keras model's input layer, read from its JSON config (only the
    shape field), or `default` when the file has no model config."""
    import json
    config = f.attrs.get('model_config')
    if config is None:
        return default
    try:
        layers = json.loads(_text(config))['config']['layers']
        shape = next(l['config']['batch_input_shape'] for l in layers if l['class_name'] == 'InputLayer')
        size = int(shape[1])
    except (ValueError, KeyError, TypeError, StopIteration, IndexError, AttributeError):
        return default
    if not 1 <= size <= MAX_IMAGE_SIZE:
        raise FaceNetError('%s: the model config declares an input size of %d pixels' % (path, size))
    return size


class Declared:
    """A weight's declared shape, standing for its array until the shape has been checked."""

    def __init__(self, shape):
        self.shape = tuple(shape)
        self.ndim = len(self.shape)


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
    if not 1 <= kernel.shape[1] <= MAX_EMBEDDING_SIZE:
        raise FaceNetError('%s: the Bottleneck/kernel weight declares an embedding size of %d'
                           % (path, kernel.shape[1]))
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


def check_outputs(model_dir, pb_file=None, overwrite=False):
    """Refuse, before any work, a model folder that exists and is not empty, or an existing pb_file,
    unless `overwrite`. Returns the absolute model folder."""
    model_dir = os.path.abspath(os.path.expanduser(model_dir))
    if os.path.lexists(model_dir) and (not os.path.isdir(model_dir) or os.listdir(model_dir)) and not overwrite:
        raise FaceNetError('%s already exists and is not an empty folder (give a new model folder, or '
                           '--overwrite replaces it)' % model_dir)
    if pb_file:
        check_new_output(pb_file, overwrite)
    return model_dir


def _move_into_place(tmp, model_dir):
    """Rename the complete folder `tmp` to model_dir; what was there (an empty folder, or what
    --overwrite replaces) goes only once the new folder is in place."""
    parent, name = os.path.split(model_dir)
    old = None
    if os.path.isdir(model_dir) and not os.path.islink(model_dir):
        old = tempfile.mkdtemp(prefix='.%s.' % name, suffix='.replaced', dir=parent)
        os.rename(model_dir, old)
    elif os.path.lexists(model_dir):
        os.remove(model_dir)
    os.rename(tmp, model_dir)
    if old is not None:
        shutil.rmtree(old)


def import_model(h5_file, model_dir, network, model_name, pb_file=None, log=print, overwrite=False):
    """Write the Keras weights of `h5_file` as the classic folder `model_dir` (`model-<name>.meta`,
    `model-<name>.ckpt-0`, `checkpoint`) and, with pb_file, as a frozen graph (see
    write_classic_model). The embedding size is the Bottleneck kernel's width (128 for
    facenet_keras.h5, 512 for the conversions of the 2018 models). Returns (number of variables,
    embedding size)."""
    model_dir = check_outputs(model_dir, pb_file, overwrite)
    with open_h5(h5_file) as f:
        datasets = keras_weight_datasets(f, h5_file)
        image_size = input_size(f, h5_file)
        declared = classic_weights({name: Declared(d.shape) for name, d in datasets.items()}, h5_file)
        keras_names = {classic_name(name): name for name in datasets}
        return write_classic_model(
            h5_file, declared, lambda name: read_dataset(datasets[keras_names[name]], declared[name].shape, h5_file),
            model_dir, network, model_name, image_size, pb_file, log)


def write_classic_model(source, declared, read, model_dir, network, model_name, image_size=160, pb_file=None,
                        log=print):
    """Build `network` at the embedding size of `declared` ({classic name: object with .shape}),
    check that every variable gets exactly one weight of its shape, then read each with
    `read(classic name)` and write the classic folder `model_dir` (checked by check_outputs) and the
    optional frozen graph. The weights are all read and checked before anything is written, under a
    temporary folder of this run, so the folder appears complete or not at all. Returns (number of
    variables, embedding size)."""
    tf = configure()
    from facenet_tf import model_io
    tf1 = tf.compat.v1
    bottleneck = embedding_size(declared, source)
    graph = tf1.Graph()
    with graph.as_default():
        build_classic_graph(network, bottleneck, image_size)
        variables = tf1.global_variables()
        check_complete(declared, variables, source)
    weights = {var.op.name: read(var.op.name) for var in variables}
    log('read %d weights from %s (embedding size %d, input %dx%d)'
        % (len(weights), source, bottleneck, image_size, image_size))
    parent = os.path.dirname(model_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = temporary_name(model_dir)
    os.mkdir(tmp)   # new, this run's (fails rather than reuse anything there)
    try:
        with graph.as_default():
            with tf1.Session() as sess:
                load_weights(sess, weights)
                saver = tf1.train.Saver(variables, save_relative_paths=True)
                model_io.save_variables_and_metagraph(sess, saver, None, tmp, model_name, 0)
                frozen = model_io.freeze_session(sess) if pb_file else None
        if frozen is not None:
            model_io.write_graph_def(frozen, pb_file)
            log('wrote %s (%d ops)' % (pb_file, len(frozen.node)))
        _move_into_place(tmp, model_dir)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp)
    log('wrote %s: model-%s.meta, model-%s.ckpt-0 (%d variables)' % (model_dir, model_name, model_name,
                                                                     len(variables)))
    return len(variables), bottleneck
