"""Every published FaceNet weight file imports: facenet-pytorch state dicts (.pt, read without
PyTorch by facenet_tf.torch_import) and 512-D Keras .h5 files become classic model folders whose
embeddings are those of the project's network holding the same weights; hostile .pt files are
refused with one line before anything in them runs or is allocated.

The .pt files here are written by the small torch.save-layout writer below, except the committed
fixtures tests/data/torch_state_dict_{zip,stream}.pt, which PyTorch 2.13 wrote (see
tests/data/README.md), and tests/data/facenet_pytorch_state_dict.json, the names and shapes of
facenet-pytorch 2.6.0's InceptionResnetV1 state dict. benchmarks/torch_roundtrip.py compares with
facenet-pytorch itself."""
import collections
import json
import os
import pickle
import zipfile

import h5py
import numpy as np
import pytest
import tensorflow as tf

from facenet_tf import embedding, import_model, keras_import, torch_import
from facenet_tf.errors import FaceNetError
from facenet_tf.models import inception_resnet_v1
from hostile import assert_one_line_error, run_main, tree_hashes

tf1 = tf.compat.v1
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data')


# --- a torch.save writer (zip layout) -----------------------------------------------------------

def _op(value):
    """The pickle opcodes of a plain value (protocol 2, without PROTO and STOP)."""
    return pickle.dumps(value, 2)[2:-1]


def _global(module, name):
    return b'c%s\n%s\n' % (module.encode(), name.encode())


def _tensor(key, storage_type, numel, offset, shape, stride):
    """The opcodes of torch._utils._rebuild_tensor_v2 on a persistent storage id."""
    storage = (b'(' + _op('storage') + _global('torch', storage_type) + _op(key) + _op('cpu') + _op(numel)
               + b't' + b'Q')
    hooks = _global('collections', 'OrderedDict') + b')R'
    return (_global('torch._utils', '_rebuild_tensor_v2') + b'(' + storage + _op(offset) + _op(tuple(shape))
            + _op(tuple(stride)) + b'\x89' + hooks + b'tR')


def _state_dict_pickle(entries):
    """data.pkl of an OrderedDict; entries: (name, key, storage type, numel, offset, shape, stride)."""
    body = b''.join(_op(name) + _tensor(key, kind, numel, offset, shape, stride)
                    for name, key, kind, numel, offset, shape, stride in entries)
    return b'\x80\x02' + _global('collections', 'OrderedDict') + b')R(' + body + b'u.'


def _write_zip(path, pkl, storages, prefix='archive', extra=()):
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as z:
        z.writestr(prefix + '/data.pkl', pkl)
        z.writestr(prefix + '/byteorder', 'little')
        for key, data in storages.items():
            z.writestr('%s/data/%s' % (prefix, key), data)
        for name, data in extra:
            z.writestr(name, data)
        z.writestr(prefix + '/version', '3\n')
    return str(path)


def write_state_dict(path, arrays):
    """A torch.save() zip file of {name: float32 array} (each its own contiguous storage)."""
    entries, storages = [], {}
    for i, (name, array) in enumerate(arrays.items()):
        array = np.ascontiguousarray(array, np.float32)
        stride = [int(s // 4) for s in array.strides] if array.size else [1] * array.ndim
        entries.append((name, str(i), 'FloatStorage', array.size, 0, array.shape, stride))
        storages[str(i)] = array.tobytes()
    return _write_zip(path, _state_dict_pickle(entries), storages)


# --- the committed fixtures and the format ------------------------------------------------------

@pytest.mark.parametrize('layout', ['zip', 'stream'])
def test_fixture_written_by_pytorch_reads_in_both_layouts(layout):
    """Float, half and bfloat16 storages, a transposed view, a 0-d long tensor."""
    with torch_import.StateDict(os.path.join(DATA, 'torch_state_dict_%s.pt' % layout)) as state:
        tensors = state.tensors
        assert list(tensors) == ['conv2d_1a.conv.weight', 'last_linear.weight', 'last_bn.running_var',
                                 'last_bn.bias', 'last_bn.num_batches_tracked']
        conv = state.read(tensors['conv2d_1a.conv.weight'])
        np.testing.assert_array_equal(conv, (np.arange(24, dtype=np.float32) / 10).reshape(2, 3, 2, 2))
        assert tensors['last_linear.weight'].stride == (1, 2)
        np.testing.assert_array_equal(state.read(tensors['last_linear.weight']), np.arange(6.).reshape(3, 2).T)
        np.testing.assert_array_equal(state.read(tensors['last_bn.running_var']), [0.5, 1.0, 2.0])
        np.testing.assert_array_equal(state.read(tensors['last_bn.bias']), [-1.5, 0.25, 3.0])
        assert tensors['last_bn.num_batches_tracked'].shape == ()
        with pytest.raises(FaceNetError, match='a LongStorage tensor where the network has float weights'):
            state.read(tensors['last_bn.num_batches_tracked'])


def test_facenet_pytorch_names_map_onto_the_classic_variables(test_data_dir):
    """Every tensor of facenet-pytorch's state dict (names and shapes of the real module tree) maps
    onto the 490 classic variables with the classic shapes, gammas apart; logits and counters are
    ignored."""
    with open(os.path.join(test_data_dir, 'facenet_pytorch_state_dict.json')) as f:
        rows = json.load(f)['tensors']
    with open(os.path.join(test_data_dir, 'inception_resnet_v1_512_variables.json')) as f:
        classic = {row[0]: tuple(row[1]) for row in json.load(f)['variables']}
    declared, sources, gammas = torch_import.plan({n: keras_import.Declared(s) for n, s in rows}, 'f.pt')
    assert {name: d.shape for name, d in declared.items()} == classic
    assert len(gammas) == 112 and len(rows) == 716   # every BatchNorm, last_bn too
    assert sources['InceptionResnetV1/Mixed_7a/Branch_2/Conv2d_0b_3x3/weights'] == \
        ('mixed_7a.branch2.1.conv.weight', torch_import.CONV)
    assert sources['InceptionResnetV1/Repeat_1/block17_10/Conv2d_1x1/biases'] == \
        ('repeat_2.9.conv2d.bias', torch_import.VECTOR)
    assert sources['InceptionResnetV1/Block8/Branch_1/Conv2d_0c_3x1/BatchNorm/moving_variance'] == \
        ('block8.branch1.2.bn.running_var', torch_import.VECTOR)
    assert sources['InceptionResnetV1/Bottleneck/weights'] == ('last_linear.weight', torch_import.LINEAR)
    assert torch_import.classic_name('repeat_1.5.conv2d.weight') is None   # only 5 Block35
    assert torch_import.classic_name('mixed_6a.conv2d.weight') is None
    with pytest.raises(FaceNetError, match=r'f.pt is not a facenet-pytorch .* 1 tensor with unknown names \(fc.w\)'):
        torch_import.plan({'fc.w': keras_import.Declared((2, 2))}, 'f.pt')


def test_gamma_folds_into_the_variance():
    rng = np.random.RandomState(1)
    x, mean, var = rng.randn(100, 4), rng.randn(4), rng.uniform(0.5, 2, 4).astype(np.float32)
    gamma = np.array([1.0, 0.5, 2.0, 1.3], np.float32)
    folded = torch_import.fold_gamma(var, gamma)
    assert folded[0] == var[0]
    np.testing.assert_allclose((x - mean) / np.sqrt(folded + 0.001), gamma * (x - mean) / np.sqrt(var + 0.001),
                               rtol=1e-5)


# --- 512-D round trips: .pt and Keras .h5 -------------------------------------------------------

def _classic_weights(test_data_dir):
    """Seeded random values for the 490 classic variables at 512-D (BatchNorm statistics too)."""
    with open(os.path.join(test_data_dir, 'inception_resnet_v1_512_variables.json')) as f:
        rows = json.load(f)['variables']
    rng = np.random.RandomState(0)
    weights = {}
    for name, shape, *_ in rows:
        if name.endswith('/weights'):
            value = rng.randn(*shape) / np.sqrt(np.prod(shape[:-1]))
        elif name.endswith('moving_variance'):
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = rng.randn(*shape) * 0.1
        weights[name] = value.astype(np.float32)
    return weights


def _torch_layout(weights, test_data_dir):
    """The classic weights as facenet-pytorch's state dict (OIHW convolutions, (out, in) Linear),
    every BatchNorm scale 1 except last_bn's (its variance adjusted to give the same outputs),
    logits and counters added."""
    with open(os.path.join(test_data_dir, 'facenet_pytorch_state_dict.json')) as f:
        rows = json.load(f)['tensors']
    arrays = collections.OrderedDict()
    for name, shape in rows:
        found = torch_import.classic_name(name)
        if found is None or found[0].endswith('/gamma'):
            arrays[name] = np.ones(shape, np.float32)
            continue
        value = weights[found[0]]
        arrays[name] = value.transpose(3, 2, 0, 1) if value.ndim == 4 else value.T
        assert list(arrays[name].shape) == shape, name
    gamma = np.linspace(0.5, 2.0, 512).astype(np.float32)
    arrays['last_bn.weight'] = gamma
    arrays['last_bn.running_var'] = (weights['InceptionResnetV1/Bottleneck/BatchNorm/moving_variance']
                                     + 0.001) * gamma ** 2 - 0.001
    return arrays


def _keras_name(classic):
    """The facenet_keras.h5 weight name of a classic variable (the published file's rule, inverted)."""
    name = classic[len('InceptionResnetV1/'):]
    for old, new in (('Repeat/block35_', 'Block35_'), ('Repeat_1/block17_', 'Block17_'),
                     ('Repeat_2/block8_', 'Block8_'), ('Block8/', 'Block8_6/')):
        name = name.replace(old, new)
    layer, weight = name.rsplit('/', 1)
    if layer.endswith('/BatchNorm'):
        layer = layer[:-len('/BatchNorm')] + '_BatchNorm'
    weight = {'weights': 'kernel', 'biases': 'bias'}.get(weight, weight)
    return '%s/%s:0' % (layer.replace('/', '_'), weight)


def write_keras_h5(path, weights):
    """A Keras weights file in facenet_keras.h5's layout (model_weights/<layer>/<layer>/<weight>:0)."""
    layers = collections.OrderedDict()
    for classic, value in weights.items():
        name = _keras_name(classic)
        layers.setdefault(name.split('/')[0], []).append((name, value))
    with h5py.File(path, 'w') as f:
        root = f.create_group('model_weights')
        root.attrs['layer_names'] = [n.encode() for n in layers]
        for layer, items in layers.items():
            group = root.create_group(layer)
            group.attrs['weight_names'] = [n.encode() for n, _ in items]
            for name, value in items:
                group[name] = value
    return str(path)


def _lfw_faces(data_dir, n=6):
    """n central 160x160 crops of LFW photos, standardised as facenet-pytorch does."""
    from PIL import Image
    folder = os.path.join(data_dir, 'lfw_deepfunneled')
    people = sorted(os.listdir(folder))[:n]
    crops = [np.asarray(Image.open(os.path.join(folder, p, sorted(os.listdir(os.path.join(folder, p)))[0]))
                        .convert('RGB'))[45:205, 45:205] for p in people]
    return ((np.stack(crops).astype(np.float32) - 127.5) / 128).astype(np.float32)


@pytest.fixture(scope='module')
def round_trip(test_data_dir, data_dir):
    """(classic weights, LFW faces, embeddings of the network holding the weights in memory)."""
    weights, faces = _classic_weights(test_data_dir), _lfw_faces(data_dir)
    with tf1.Graph().as_default():
        x = tf1.placeholder(tf.float32, [None, 160, 160, 3])
        prelogits, _ = inception_resnet_v1.inference(x, 1.0, phase_train=False, bottleneck_layer_size=512)
        emb = tf.nn.l2_normalize(prelogits, 1, 1e-10)
        with tf1.Session() as sess:
            keras_import.load_weights(sess, weights)
            expected = sess.run(emb, {x: faces})
    return weights, faces, expected


def _folder_embeddings(folder, faces):
    with tf1.Graph().as_default(), tf1.Session() as sess:
        embedding.load_for_inference(folder, sess)
        x, phase_train, emb = embedding.model_tensors(sess.graph)
        return sess.run(emb, {x: faces, phase_train: False})


def test_pt_state_dict_imports_with_the_network_s_embeddings(round_trip, test_data_dir, tmp_path):
    weights, faces, expected = round_trip
    pt = write_state_dict(tmp_path / '20180402-114759-vggface2.pt', _torch_layout(weights, test_data_dir))
    r = run_main(import_model, [pt, tmp_path / 'model'])
    assert r.code == 0, r
    assert 'read 490 weights' in r.out and 'embedding size 512' in r.out
    folder = tmp_path / 'model'
    assert sorted(os.listdir(folder)) == [
        'checkpoint', 'model-20180402-114759-vggface2.ckpt-0.data-00000-of-00001',
        'model-20180402-114759-vggface2.ckpt-0.index', 'model-20180402-114759-vggface2.meta']
    reader = tf.train.load_checkpoint(str(folder / 'model-20180402-114759-vggface2.ckpt-0'))
    for name in ('InceptionResnetV1/Conv2d_1a_3x3/weights', 'InceptionResnetV1/Bottleneck/weights',
                 'InceptionResnetV1/Repeat/block35_2/Conv2d_1x1/biases'):
        assert np.array_equal(reader.get_tensor(name), weights[name]), name
    got = _folder_embeddings(str(folder), faces)
    assert got.shape == (len(faces), 512)
    np.testing.assert_allclose(got, expected, atol=2e-6)
    distances = np.linalg.norm(expected[:, None] - expected[None], axis=2)[np.triu_indices(len(faces), 1)]
    assert distances.min() > 500 * 2e-6   # different faces lie far apart compared with the tolerance


def test_keras_h5_at_512d_imports_with_the_network_s_embeddings(round_trip, tmp_path):
    """The Keras layout with a 512-D Bottleneck (keras-facenet's conversion of 20180402-114759):
    the embedding size comes from the Bottleneck kernel."""
    weights, faces, expected = round_trip
    h5 = write_keras_h5(tmp_path / 'facenet_512.h5', weights)
    lines = []
    assert keras_import.import_model(h5, str(tmp_path / 'model'), inception_resnet_v1, 'm', log=lines.append) \
        == (490, 512)
    assert 'embedding size 512' in lines[0]
    np.testing.assert_allclose(_folder_embeddings(str(tmp_path / 'model'), faces), expected, atol=2e-6)


# --- hostile files ------------------------------------------------------------------------------

class _Call:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _hostile(tmp_path, kind):
    """A crafted .pt file of the given kind and the marker file it would create if it ran."""
    marker = str(tmp_path / 'ran')
    path = str(tmp_path / ('%s.pt' % kind))
    one = [('last_bn.bias', '0', 'FloatStorage', 3, 0, (3,), (1,))]
    if kind == 'os_system':
        return _write_zip(path, pickle.dumps(_Call(os.system, 'touch ' + marker), 2), {}), marker
    if kind == 'eval':
        return _write_zip(path, pickle.dumps(_Call(eval, 'open(%r, "w")' % marker), 2), {}), marker
    if kind == 'object_state':
        return _write_zip(path, pickle.dumps(collections.Counter(a=1), 2), {}), marker
    if kind == 'dotdot_member':
        return _write_zip(path, _state_dict_pickle(one), {'0': bytes(12)}, extra=[('archive/../x', b'')]), marker
    if kind == 'shape_past_storage':
        entries = [('last_bn.bias', '0', 'FloatStorage', 3, 0, (1000,), (1,))]
        return _write_zip(path, _state_dict_pickle(entries), {'0': bytes(12)}), marker
    if kind == 'storage_past_member':
        entries = [('last_bn.bias', '0', 'FloatStorage', 10 ** 12, 0, (10 ** 12,), (1,))]
        return _write_zip(path, _state_dict_pickle(entries), {'0': bytes(12)}), marker
    if kind == 'huge_member':
        _write_zip(path, _state_dict_pickle(one), {'0': bytes(12)})
        with open(path, 'r+b') as f:   # the central directory entry of data/0 declares 4 GB
            entry = f.read().rindex(b'archive/data/0') - 46
            f.seek(entry + 24)
            f.write((0xFFFFFFF0).to_bytes(4, 'little'))
        return path, marker
    if kind == 'sparse_view':
        entries = [('last_bn.bias', '0', 'FloatStorage', 3000, 0, (3,), (1000,))]
        return _write_zip(path, _state_dict_pickle(entries), {'0': bytes(12000)}), marker
    if kind == 'garbage':
        with open(path, 'wb') as f:
            f.write(b'\x80\x02' + b'\xff' * 64)
        return path, marker
    raise ValueError(kind)


@pytest.mark.parametrize('kind, fragment', [
    ('os_system', 'refused posix.system'),
    ('eval', '.eval (a state dict holds only tensors'),
    ('object_state', 'refused collections.Counter'),
    ('dotdot_member', "archive member 'archive/../x' is not a plain name under archive/ (refused)"),
    ('shape_past_storage', 'a tensor of shape (1000,) that needs 1000 elements of a storage of 3'),
    ('storage_past_member', 'storage 0 declares 1000000000000 elements but data/0 holds 12 bytes'),
    ('huge_member', 'the archive unpacks to 4294967'),
    ('sparse_view', 'a tensor of shape (3,) spread over 2001 elements'),
    ('garbage', 'not a PyTorch state dict'),
])
def test_hostile_pt_is_refused_with_one_line_and_nothing_run(tmp_path, kind, fragment):
    pt, marker = _hostile(tmp_path, kind)
    inputs = tree_hashes(tmp_path)
    r = run_main(import_model, [pt, tmp_path / 'out' / 'model'])
    assert_one_line_error(r, pt, fragment, code=2)
    assert not os.path.exists(marker) and not (tmp_path / 'out').exists()
    assert tree_hashes(tmp_path) == inputs


def test_shapes_are_checked_before_reading_and_bad_scales_refused(test_data_dir, tmp_path):
    """The full layout, every tensor a broadcast view of one stored element, conv2d_1a's kernel
    declaring 100000 times the network's output channels (345 MB if it were read): refused from the
    declared shapes by the network check, before anything is read; so is a 10^6-D bottleneck. A
    BatchNorm scale <= 0, which no variance can stand for, is refused when read."""
    with open(os.path.join(test_data_dir, 'facenet_pytorch_state_dict.json')) as f:
        rows = json.load(f)['tensors']
    rows[0] = ['conv2d_1a.conv.weight', [3200000, 3, 3, 3]]
    entries = [(name, str(i), 'FloatStorage', 1, 0, tuple(shape), (0,) * len(shape))
               for i, (name, shape) in enumerate(rows)]
    pt = _write_zip(tmp_path / 'wide.pt', _state_dict_pickle(entries), {e[1]: bytes(4) for e in entries})
    r = run_main(import_model, [pt, tmp_path / 'model'])
    assert_one_line_error(r, pt, 'wrong shape for 1 weight (InceptionResnetV1/Conv2d_1a_3x3/weights: '
                          '(3, 3, 3, 3200000) in the file, (3, 3, 3, 32) in the network)', code=2)
    rows[0] = ['conv2d_1a.conv.weight', [32, 3, 3, 3]]
    rows[[name for name, _ in rows].index('last_linear.weight')] = ['last_linear.weight', [10 ** 6, 1792]]
    entries = [(name, str(i), 'FloatStorage', 1, 0, tuple(shape), (0,) * len(shape))
               for i, (name, shape) in enumerate(rows)]
    pt = _write_zip(tmp_path / 'deep.pt', _state_dict_pickle(entries), {e[1]: bytes(4) for e in entries})
    r = run_main(import_model, [pt, tmp_path / 'model'])
    assert_one_line_error(r, pt, 'declares an embedding size of 1000000', code=2)
    rows[[name for name, _ in rows].index('last_linear.weight')] = ['last_linear.weight', [512, 1792]]
    entries = [(name, str(i), 'FloatStorage', 1, 0, tuple(shape), (0,) * len(shape))
               for i, (name, shape) in enumerate(rows)]
    values = {e[1]: np.float32(-1 if e[0] == 'last_bn.weight' else 1).tobytes() for e in entries}
    pt = _write_zip(tmp_path / 'negative.pt', _state_dict_pickle(entries), values)
    r = run_main(import_model, [pt, tmp_path / 'model'])
    assert_one_line_error(r, pt, 'last_bn.weight has values <= 0 (a batch norm scale the classic network', code=2)
    assert not (tmp_path / 'model').exists()


def test_wrong_files_give_one_line(tmp_path):
    r = run_main(import_model, [tmp_path / 'absent.pt', tmp_path / 'model'])
    assert_one_line_error(r, 'absent.pt: not found', code=2)
    pt = write_state_dict(tmp_path / 'other.pt', {'fc.weight': np.zeros((2, 3))})
    r = run_main(import_model, [pt, tmp_path / 'model'])
    assert_one_line_error(r, pt, '1 tensor with unknown names (fc.weight)', code=2)
    pt = write_state_dict(tmp_path / 'rank.pt', {'last_linear.weight': np.zeros(3)})
    r = run_main(import_model, [pt, tmp_path / 'model'])
    assert_one_line_error(r, pt, 'last_linear.weight has shape (3,), not a rank-2 tensor', code=2)
    pt = _write_zip(tmp_path / 'list.pt', pickle.dumps([1, 2], 2), {})
    r = run_main(import_model, [pt, tmp_path / 'model'])
    assert_one_line_error(r, pt, 'holds no state dict (a dict of named tensors)', code=2)
    assert not (tmp_path / 'model').exists()
