"""Hostile model files: MTCNN weight pickles, frozen graphs and meta graphs, checkpoint folders and
Keras .h5 files built at test time to run a command, read or write a file, or declare huge data.
Each case checks the promise of docs/security.md: nothing runs, nothing outside is read, nothing is
overwritten, one line naming the file."""
import os
import pickle
import shutil

import h5py
import numpy as np
import pytest
import tensorflow as tf

from facenet_tf import export_tflite
from facenet_tf import freeze as freeze_graph
from facenet_tf import import_model as import_keras_model
from facenet_tf.align import mtcnn_weights as mw
from facenet_tf import model_io, model_screen
from facenet_tf.errors import FaceNetError
from hostile import assert_one_line_error, run_main, run_tool, secret_file, tree_hashes

tf1 = tf.compat.v1


class _Command:
    """Pickles as a call of os.system(command): what a crafted weight file holds."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def _one_line(excinfo, *fragments):
    message = str(excinfo.value)
    assert '\n' not in message
    for fragment in fragments:
        assert str(fragment) in message, (fragment, message)
    return message


# --- MTCNN weights ------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def packaged():
    return mw.load_packaged()


def _classic_folder(folder, packaged):
    mw.save_classic(packaged, str(folder))
    return folder


def test_npy_weights_naming_os_system_are_refused_before_running(tmp_path, packaged):
    from facenet_tf.align import detect_face
    folder = _classic_folder(tmp_path / 'mtcnn', packaged)
    marker = tmp_path / 'ran'
    np.save(str(folder / 'det1.npy'), np.array(_Command('touch %s' % marker), dtype=object), allow_pickle=True)
    before = tree_hashes(folder)
    with pytest.raises(FaceNetError) as e:
        mw.load_weights(str(folder))
    _one_line(e, folder / 'det1.npy', 'refused global posix.system')
    with pytest.raises(FaceNetError, match='refused global'):
        detect_face.MTCNN(model_path=str(folder))
    assert not marker.exists()
    assert tree_hashes(folder) == before


def test_lz4_weights_naming_os_system_are_refused_before_running(tmp_path, packaged):
    import joblib
    folder = tmp_path / 'lz4'
    folder.mkdir()
    for net in mw.NETS:
        shutil.copy(os.path.join(mw.packaged_weights_dir(), net + '.lz4'), str(folder))
    marker = tmp_path / 'ran'
    joblib.dump([_Command('touch %s' % marker)], str(folder / 'rnet.lz4'), compress='lz4')
    with pytest.raises(FaceNetError) as e:
        mw.load_weights(str(folder))
    _one_line(e, folder / 'rnet.lz4', 'refused global posix.system')
    assert not marker.exists()


def test_lz4_array_declaring_a_huge_shape_is_refused_before_allocation(tmp_path):
    """A joblib array wrapper declaring 10^12 floats (and holding none) stops before joblib allocates."""
    import joblib.numpy_pickle as jp
    import lz4.frame
    wrapper = jp.NumpyArrayWrapper.__new__(jp.NumpyArrayWrapper)
    wrapper.__dict__.update(subclass=np.ndarray, shape=(10 ** 6, 10 ** 6), order='C', dtype=np.dtype('f4'),
                            allow_mmap=False, numpy_array_alignment_bytes=None)
    folder = tmp_path / 'huge'
    folder.mkdir()
    (folder / 'pnet.lz4').write_bytes(lz4.frame.compress(pickle.dumps([wrapper], protocol=2)))
    with pytest.raises(FaceNetError) as e:
        mw.load_weights(str(folder))
    _one_line(e, folder / 'pnet.lz4', 'is not a weight shape')


def test_classic_npy_weights_load_identical_arrays(tmp_path, packaged):
    loaded = mw.load_weights(str(_classic_folder(tmp_path / 'npy', packaged)))
    for net in mw.NETS:
        assert set(loaded[net]) == set(packaged[net])
        for layer, params in packaged[net].items():
            for name, value in params.items():
                assert loaded[net][layer][name].dtype == np.float32
                np.testing.assert_array_equal(loaded[net][layer][name], value)


@pytest.mark.parametrize('damage, fragment', [
    ('shape', 'conv2/weights has shape (3, 3, 10, 17), the pnet network needs (3, 3, 10, 16)'),
    ('missing', 'lacks PReLU2/alpha of the pnet network'),
    ('strings', "unexpected dtype 'U1'"),
    ('plain', 'not MTCNN weights (a float32 array'),
    ('truncated', 'not readable MTCNN weights'),
])
def test_malformed_npy_weights_are_one_line(tmp_path, packaged, damage, fragment):
    folder = _classic_folder(tmp_path / damage, packaged)
    pnet = {layer: dict(params) for layer, params in packaged['pnet'].items()}
    if damage == 'shape':
        pnet['conv2']['weights'] = np.zeros((3, 3, 10, 17), np.float32)
    elif damage == 'missing':
        del pnet['PReLU2']
    elif damage == 'strings':
        pnet['conv1']['biases'] = np.array(list('abcdefghij'))
    np.save(str(folder / 'det1.npy'), pnet, allow_pickle=True)
    if damage == 'plain':
        np.save(str(folder / 'det1.npy'), np.zeros((3, 3), np.float32))
    elif damage == 'truncated':
        data = (folder / 'det1.npy').read_bytes()
        (folder / 'det1.npy').write_bytes(data[:len(data) // 2])
    with pytest.raises(FaceNetError) as e:
        mw.load_weights(str(folder))
    _one_line(e, folder / 'det1.npy', fragment)


# --- frozen graphs and meta graphs --------------------------------------------------------------

def _tiny_graph(side_effect=None):
    """input -> conv -> embeddings (the tool contract); side_effect(graph) adds an op the embeddings
    depend on (through a control dependency or a data input)."""
    images = tf1.placeholder(tf.float32, [None, 8, 8, 3], name='input')
    tf1.placeholder(tf.bool, name='phase_train')
    w = tf1.get_variable('Net/weights', [3, 3, 3, 4], initializer=tf1.ones_initializer())
    net = tf.reduce_mean(tf.nn.conv2d(images, w, [1, 1, 1, 1], 'SAME'), [1, 2])
    deps = [side_effect()] if side_effect else []
    with tf1.control_dependencies(deps):
        net = tf.identity(net)
    return tf.nn.l2_normalize(net, 1, 1e-10, name='embeddings')


def _frozen(path, side_effect=None):
    with tf1.Graph().as_default() as graph:
        _tiny_graph(side_effect)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            frozen = tf1.graph_util.convert_variables_to_constants(sess, graph.as_graph_def(), ['embeddings'])
    with open(str(path), 'wb') as f:
        f.write(frozen.SerializeToString())
    return str(path)


def _folder(path):
    """A classic checkpoint folder of the tiny graph (model-x.meta, model-x.ckpt-1)."""
    os.makedirs(str(path))
    with tf1.Graph().as_default():
        _tiny_graph()
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            model_io.save_variables_and_metagraph(sess, tf1.train.Saver(), None, str(path), 'x', 1)
    return str(path)


def _edit_meta(folder, edit):
    meta_path = os.path.join(folder, 'model-x.meta')
    meta = tf1.MetaGraphDef()
    with open(meta_path, 'rb') as f:
        meta.ParseFromString(f.read())
    edit(meta)
    with open(meta_path, 'wb') as f:
        f.write(meta.SerializeToString())


def _node(graph_def, name):
    return next(n for n in graph_def.node if n.name == name)


def _load(model):
    with tf1.Graph().as_default(), tf1.Session() as sess:
        model_io.load_for_inference(model, sess)


@pytest.mark.parametrize('kind', ['WriteFile', 'ReadFile', 'PyFunc'])
def test_frozen_graph_with_io_or_python_ops_is_refused(tmp_path, kind):
    marker, (secret, data) = tmp_path / 'written', secret_file(tmp_path)
    effects = {
        'WriteFile': lambda: tf.io.write_file(str(marker), 'x'),
        'ReadFile': lambda: tf.io.read_file(secret),
        'PyFunc': lambda: tf1.py_func(lambda: np.int64(0), [], tf.int64),
    }
    pb = _frozen(tmp_path / ('%s.pb' % kind), effects[kind])
    with pytest.raises(FaceNetError) as e:
        _load(pb)
    _one_line(e, pb, 'refused op %s' % kind)
    out = tmp_path / 'out'
    r = run_main(export_tflite, [pb, out / 'm.tflite'])
    assert_one_line_error(r, pb, 'refused op %s' % kind, code=2)
    assert not marker.exists() and not out.exists()
    assert data not in (r.out + r.err).encode()


def test_io_op_behind_the_fed_input_is_refused_when_a_control_input_runs_it(tmp_path):
    """Feeding `input:0` skips what computes it, unless a node waits on `input` itself (`^input`)."""
    marker = tmp_path / 'written'
    pb = _frozen(tmp_path / 'm.pb')
    graph_def = model_io.read_graph_def(pb)
    with tf1.Graph().as_default() as g:
        tf.io.write_file(str(marker), 'x', name='evil')
    graph_def.node.extend(g.as_graph_def().node)
    _node(graph_def, 'input').input.append('^evil')
    with open(pb, 'wb') as f:
        f.write(graph_def.SerializeToString())
    model_screen.screen_graph(graph_def, pb)   # nothing waits on `input` yet: the write cannot run
    _node(graph_def, 'embeddings').input.append('^input')
    with open(pb, 'wb') as f:
        f.write(graph_def.SerializeToString())
    with pytest.raises(FaceNetError) as e:
        _load(pb)
    _one_line(e, pb, 'refused op WriteFile (node evil)')
    assert not marker.exists()


def test_meta_graph_whose_restore_writes_a_file_is_refused(tmp_path):
    folder = _folder(tmp_path / 'model')
    marker = tmp_path / 'written'

    def edit(meta):
        with tf1.Graph().as_default() as g:
            tf.io.write_file(str(marker), 'x', name='save/evil')
        meta.graph_def.node.extend([n for n in g.as_graph_def().node])
        _node(meta.graph_def, 'save/restore_all').input.append('^save/evil')
    _edit_meta(folder, edit)
    before = tree_hashes(folder)
    r = run_main(freeze_graph, [folder, tmp_path / 'frozen.pb'])
    assert_one_line_error(r, 'model-x.meta', 'refused op WriteFile', code=2)
    assert not marker.exists() and not (tmp_path / 'frozen.pb').exists()
    assert tree_hashes(folder) == before


def test_restore_reading_another_checkpoint_is_refused(tmp_path):
    """The meta graph's RestoreV2 reads a prefix of its own (a Const) instead of the Saver's file name."""
    folder = _folder(tmp_path / 'model')
    elsewhere = _folder(tmp_path / 'elsewhere')

    def edit(meta):
        const = tf1.NodeDef(name='save/other_prefix', op='Const')
        const.attr['dtype'].type = tf.string.as_datatype_enum
        const.attr['value'].tensor.CopyFrom(tf1.make_tensor_proto(os.path.join(elsewhere, 'model-x.ckpt-1')))
        meta.graph_def.node.extend([const])
        restore = next(n for n in meta.graph_def.node if n.op == 'RestoreV2')
        restore.input[0] = 'save/other_prefix'
    _edit_meta(folder, edit)
    r = run_main(freeze_graph, [folder, tmp_path / 'frozen.pb'])
    assert_one_line_error(r, 'model-x.meta', 'refused op RestoreV2', code=2)
    assert not (tmp_path / 'frozen.pb').exists()


def test_const_declaring_a_huge_tensor_is_refused(tmp_path):
    pb = _frozen(tmp_path / 'm.pb')
    graph_def = model_io.read_graph_def(pb)
    huge = tf1.NodeDef(name='huge', op='Const')
    huge.attr['dtype'].type = tf.float32.as_datatype_enum
    tensor = huge.attr['value'].tensor
    tensor.dtype = tf.float32.as_datatype_enum
    tensor.tensor_shape.dim.add().size = 1 << 20
    tensor.tensor_shape.dim.add().size = 1 << 20
    tensor.float_val.append(1.0)
    graph_def.node.extend([huge])
    _node(graph_def, 'embeddings').input.append('^huge')
    with open(pb, 'wb') as f:
        f.write(graph_def.SerializeToString())
    with pytest.raises(FaceNetError) as e:
        _load(pb)
    _one_line(e, pb, 'node huge declares a 4398.0 GB constant')


def test_fill_of_a_huge_constant_shape_is_refused(tmp_path):
    pb = _frozen(tmp_path / 'm.pb', lambda: tf.fill(tf.constant([1 << 20, 1 << 20]), 1.0, name='zeros'))
    with pytest.raises(FaceNetError) as e:
        _load(pb)
    _one_line(e, pb, 'node zeros (Fill) declares a 4398.0 GB tensor')


def _assert_passes_the_screen(pb, folder):
    model_screen.screen_graph(model_io.read_graph_def(pb), pb)
    meta_file, _ = model_io.get_model_filenames(folder)
    meta = model_io.read_meta_graph(folder, meta_file)
    model_screen.screen_graph(meta.graph_def, meta_file, saver_def=meta.saver_def)
    ops = {n.op for n in meta.graph_def.node}
    assert 'RestoreV2' in ops and 'SaveV2' in ops - model_screen.INFERENCE_OPS   # there, never run


def test_published_model_passes_the_screen(published_model):
    folder, pb = published_model
    _assert_passes_the_screen(pb, folder)


def test_reference_networks_pass_the_screen(ref_pb, ref_checkpoint):
    _assert_passes_the_screen(ref_pb, ref_checkpoint)


# --- checkpoint folders -------------------------------------------------------------------------

def test_checkpoint_file_naming_a_checkpoint_outside_is_refused(tmp_path):
    folder, elsewhere = _folder(tmp_path / 'model'), _folder(tmp_path / 'elsewhere')
    for f in os.listdir(folder):
        if '.ckpt-' in f:
            os.remove(os.path.join(folder, f))
    for named in ('../elsewhere/model-x.ckpt-1', os.path.join(elsewhere, 'model-y.ckpt-1')):
        with open(os.path.join(folder, 'checkpoint'), 'w') as f:
            f.write('model_checkpoint_path: "%s"\n' % named)
        r = run_main(freeze_graph, [folder, tmp_path / 'frozen.pb'])
        assert_one_line_error(r, os.path.join(folder, 'checkpoint'), 'is outside the model folder', code=2)
    assert not (tmp_path / 'frozen.pb').exists()


def test_absolute_checkpoint_path_of_a_moved_folder_restores_from_inside(tmp_path):
    """A folder trained elsewhere keeps absolute paths: the file of that name inside the folder is used."""
    folder = _folder(tmp_path / 'model')
    with open(os.path.join(folder, 'checkpoint'), 'w') as f:
        f.write('model_checkpoint_path: "/old/machine/runs/model-x.ckpt-1"\n')
    assert model_io.get_model_filenames(folder) == ('model-x.meta', 'model-x.ckpt-1')


@pytest.mark.parametrize('entry', ['meta', 'index'])
def test_folder_entries_linking_outside_are_refused(tmp_path, entry):
    folder, elsewhere = _folder(tmp_path / 'model'), _folder(tmp_path / 'elsewhere')
    name = 'model-x.meta' if entry == 'meta' else 'model-x.ckpt-1.index'
    os.remove(os.path.join(folder, name))
    os.symlink(os.path.join(elsewhere, name), os.path.join(folder, name))
    r = run_main(freeze_graph, [folder, tmp_path / 'frozen.pb'])
    assert_one_line_error(r, os.path.join(folder, name), 'links outside the model folder', code=2)


def test_meta_that_is_a_fifo_is_refused_without_hanging(tmp_path):
    folder = _folder(tmp_path / 'model')
    os.remove(os.path.join(folder, 'model-x.meta'))
    os.mkfifo(os.path.join(folder, 'model-x.meta'))
    r = run_main(freeze_graph, [folder, tmp_path / 'frozen.pb'])
    assert_one_line_error(r, 'model-x.meta', 'not a regular file', code=2)


@pytest.mark.parametrize('damage, fragment', [
    ('garbage_pb', 'is not a frozen TensorFlow graph (.pb): DecodeError'),
    ('text_pb', 'is not a frozen TensorFlow graph (.pb)'),
    ('truncated_pb', 'is not a frozen TensorFlow graph (.pb)'),
    ('two_meta', 'more than one .meta file'),
    ('missing_data', 'cannot restore model-x.ckpt-1'),
    ('saver_names_absent_ops', 'cannot restore model-x.ckpt-1'),
    ('garbage_meta', 'is not a TensorFlow meta graph'),
])
def test_damaged_model_files_are_one_line(tmp_path, damage, fragment):
    if damage.endswith('_pb'):
        model = _frozen(tmp_path / 'm.pb')
        data = open(model, 'rb').read()
        content = {'garbage_pb': b'\xff\xfe' * 50, 'text_pb': b'node {\n  name: "input"\n  op: "Placeholder"\n',
                   'truncated_pb': data[:len(data) * 2 // 3]}[damage]
        with open(model, 'wb') as f:
            f.write(content)
    else:
        model = _folder(tmp_path / 'model')
        if damage == 'two_meta':
            shutil.copy(os.path.join(model, 'model-x.meta'), os.path.join(model, 'model-y.meta'))
        elif damage == 'missing_data':
            os.remove(os.path.join(model, 'model-x.ckpt-1.data-00000-of-00001'))
        elif damage == 'saver_names_absent_ops':
            _edit_meta(model, lambda meta: setattr(meta.saver_def, 'restore_op_name', 'nowhere/restore_all'))
        elif damage == 'garbage_meta':
            with open(os.path.join(model, 'model-x.meta'), 'wb') as f:
                f.write(b'\xff' * 100)
    r = run_main(export_tflite, [model, tmp_path / 'm.tflite'])
    assert_one_line_error(r, fragment, code=2)
    assert not (tmp_path / 'm.tflite').exists()


# --- outputs that exist already -----------------------------------------------------------------

@pytest.mark.parametrize('tool', ['freeze_graph', 'export_tflite'])
def test_existing_output_is_refused_before_any_work(tmp_path, tool):
    module = {'freeze_graph': freeze_graph, 'export_tflite': export_tflite}[tool]
    model = _folder(tmp_path / 'model') if tool == 'freeze_graph' else _frozen(tmp_path / 'm.pb')
    out = tmp_path / 'mine.out'
    out.write_bytes(b'keep me')
    r = run_main(module, [model, out])
    assert_one_line_error(r, out, 'exists already', '--overwrite', code=2)
    assert out.read_bytes() == b'keep me'


def test_freeze_overwrite_replaces_atomically(tmp_path):
    folder = _folder(tmp_path / 'model')
    out = tmp_path / 'frozen.pb'
    out.write_bytes(b'old')
    r = run_main(freeze_graph, [folder, out, '--overwrite'])
    assert r.code == 0, r
    assert len(model_io.read_graph_def(str(out)).node) > 3
    assert sorted(os.listdir(tmp_path)) == ['frozen.pb', 'model']


def test_tflite_export_of_a_folder_writes_nothing_beside_the_output(tmp_path):
    """The folder is frozen in memory: a file of the user's named like the old `<output>.frozen.pb`
    temporary stays as it was."""
    folder = _folder(tmp_path / 'model')
    out = tmp_path / 'm.tflite'
    mine = tmp_path / 'm.tflite.frozen.pb'
    mine.write_bytes(b'mine')
    r = run_main(export_tflite, [folder, out])
    assert r.code == 0, r
    assert mine.read_bytes() == b'mine' and out.stat().st_size > 100
    assert sorted(os.listdir(tmp_path)) == ['m.tflite', 'm.tflite.frozen.pb', 'model']


# --- Keras .h5 ----------------------------------------------------------------------------------

def _keras_file(path, make_weight):
    """A Keras weights layout with one layer `Bottleneck` whose weight make_weight(group, name) writes."""
    with h5py.File(str(path), 'w') as f:
        f.attrs['layer_names'] = [b'Bottleneck']
        group = f.create_group('Bottleneck')
        group.attrs['weight_names'] = [b'Bottleneck/kernel:0']
        make_weight(f, group, 'Bottleneck/kernel:0')
    return str(path)


def _secret_h5(tmp_path, data):
    path = str(tmp_path / 'elsewhere.h5')
    with h5py.File(path, 'w') as f:
        f['d'] = np.frombuffer(data[:len(data) // 4 * 4], np.float32).reshape(1, -1)
    return path


@pytest.mark.parametrize('kind, fragment', [
    ('external_storage', 'has external storage in'),
    ('external_link', 'is an external link to'),
    ('virtual', 'is a virtual dataset'),
    ('soft_link', 'is a SoftLink'),
    ('group', 'is a Group, not a dataset'),
    ('strings', 'has type |S'),
    ('objects', 'has type object'),
    ('huge_embedding', 'declares an embedding size of 1000000000'),
    ('filter_plugin', 'needs HDF5 filter 32099 (refused'),
])
def test_hostile_or_malformed_h5_is_refused_before_reading(tmp_path, kind, fragment):
    secret, data = secret_file(tmp_path)
    elsewhere = _secret_h5(tmp_path, data)

    def make(f, group, name):
        if kind == 'external_storage':
            group.create_dataset(name, shape=(1, len(data) // 4), dtype='f4',
                                 external=[(secret, 0, h5py.h5f.UNLIMITED)])
        elif kind == 'external_link':
            group.create_group('Bottleneck')
            group['Bottleneck']['kernel:0'] = h5py.ExternalLink(elsewhere, '/d')
        elif kind == 'virtual':
            source = h5py.VirtualSource(elsewhere, 'd', shape=(1, len(data) // 4))
            layout = h5py.VirtualLayout(shape=(1, len(data) // 4), dtype='f4')
            layout[:] = source
            group.create_virtual_dataset(name, layout)
        elif kind == 'soft_link':
            f['stash'] = np.zeros((1792, 128), np.float32)
            group.create_group('Bottleneck')
            group['Bottleneck']['kernel:0'] = h5py.SoftLink('/stash')
        elif kind == 'group':
            group.create_group(name)
        elif kind == 'strings':
            group[name] = np.array([b'abc', b'def'])
        elif kind == 'objects':
            group.create_dataset(name, shape=(2,), dtype=h5py.string_dtype())
        elif kind == 'filter_plugin':
            group.create_dataset(name, shape=(1792, 128), dtype='f4', chunks=(64, 128), compression=32099,
                                 allow_unknown_filter=True)
        elif kind == 'huge_embedding':
            group.create_dataset(name, shape=(1792, 10 ** 9), dtype='f4', chunks=(1, 1024))
    h5 = _keras_file(tmp_path / ('%s.h5' % kind), make)
    inputs = tree_hashes(tmp_path)
    out = tmp_path / 'out'
    r = run_main(import_keras_model, [h5, out / 'model', '--pb', out / 'model.pb'])
    assert_one_line_error(r, h5, fragment, code=2)
    assert not out.exists()
    assert data not in (r.out + r.err).encode()
    assert tree_hashes(tmp_path) == inputs


def test_published_layout_with_a_huge_declared_weight_stays_small(keras_h5, tmp_path):
    """One weight of a copy of the published file declares 3.8 GB: refused from its declared shape,
    never read (peak memory of the whole run as a subprocess stays near TensorFlow's own); the user's
    `<folder>.importing` (which the import used to delete) is left alone."""
    h5 = str(tmp_path / 'huge.h5')
    shutil.copy(keras_h5, h5)
    with h5py.File(h5, 'r+') as f:
        group = f['model_weights']['Conv2d_1a_3x3']
        del group['Conv2d_1a_3x3/kernel:0']
        group.create_dataset('Conv2d_1a_3x3/kernel:0', shape=(3, 3, 3, 32 * 10 ** 6 // 3), dtype='f4',
                             chunks=(1, 1, 1, 4096))
    out = tmp_path / 'out'
    keep = out / 'model.importing'
    keep.mkdir(parents=True)
    (keep / 'notes.txt').write_text('mine')
    r = run_tool('import_keras_model.py', [h5, out / 'model'])
    assert_one_line_error(r, 'wrong shape for 1 weight (InceptionResnetV1/Conv2d_1a_3x3/weights: '
                          '(3, 3, 3, 10666666) in the file', code=2)
    assert r.peak_mib < 1500, r.peak_mib
    assert os.listdir(out) == ['model.importing'] and (keep / 'notes.txt').read_text() == 'mine'


def test_import_never_replaces_what_it_did_not_make(keras_h5, tmp_path):
    """An existing .pb is refused before any work unless --overwrite; --overwrite replaces a
    non-empty model folder whole, with nothing left beside it."""
    model, pb = tmp_path / 'model', tmp_path / 'model.pb'
    pb.write_bytes(b'my pb')
    r = run_main(import_keras_model, [keras_h5, model, '--pb', pb])
    assert_one_line_error(r, pb, 'exists already', '--overwrite', code=2)
    assert pb.read_bytes() == b'my pb' and not model.exists()
    model.mkdir()
    (model / 'old.txt').write_text('old')
    r = run_main(import_keras_model, [keras_h5, model, '--overwrite', '--model_name', 'm'])
    assert r.code == 0, r
    assert sorted(os.listdir(model)) == ['checkpoint', 'model-m.ckpt-0.data-00000-of-00001',
                                         'model-m.ckpt-0.index', 'model-m.meta']
    assert sorted(os.listdir(tmp_path)) == ['model', 'model.pb']
