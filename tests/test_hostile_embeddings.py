"""Hostile classifier files (.pkl) and embeddings files (.h5), and the tools that read or write them
(classifier.py, export_embeddings.py, validate_on_lfw.py): every crafted file is built here; each
case checks one line naming the file, the exit code, nothing written, the inputs unchanged, nothing
run or read from elsewhere, and bounded memory where a file declares a size."""
import glob
import os
import pickle
import resource
import shutil
import tracemalloc
import zipfile

import h5py
import numpy as np
import pytest
from PIL import Image
from sklearn.neighbors import KNeighborsClassifier

from facenet_tf import classifier
from facenet_tf import export_embeddings
from facenet_tf import validate as validate_on_lfw
from facenet_tf import classify, embeddings_file, tf_setup
from hostile import assert_not_in_tree, assert_one_line_error, run_main, run_tool, secret_file, tree_hashes

tf = tf_setup.configure()
tf1 = tf.compat.v1
MIB = 1 << 20
SIZE = 32
DIM = 16
CLASSES = ('Ann_Lee', 'Bob', 'Cy')


class _Peak:
    """Peak Python-tracked allocation (NumPy arrays and bytes included) inside the block, in MiB."""

    def __enter__(self):
        tracemalloc.start()
        return self

    def __exit__(self, *exc):
        self.mib = tracemalloc.get_traced_memory()[1] / MIB
        tracemalloc.stop()


def _pixel_model(path, seed):
    """A frozen model: 8x8 average pooling of the image, a fixed random projection to DIM values,
    L2-normalised; another seed is another model."""
    weights = np.random.RandomState(seed).randn((SIZE // 8) ** 2 * 3, DIM).astype(np.float32)
    with tf1.Graph().as_default() as graph:
        images = tf1.placeholder(tf.float32, [None, SIZE, SIZE, 3], name='input')
        tf1.placeholder_with_default(False, [], name='phase_train')
        pooled = tf.reshape(tf.nn.avg_pool2d(images, 8, 8, 'VALID'), [-1, weights.shape[0]])
        tf.nn.l2_normalize(tf.matmul(pooled, tf.constant(weights)), 1, 1e-10, name='embeddings')
        with open(path, 'wb') as f:
            f.write(graph.as_graph_def().SerializeToString())
    return path


@pytest.fixture(scope='module')
def work(tmp_path_factory):
    """Two models of the same file name (models/a/m.pb, models/b/m.pb), an aligned folder of three
    people with five faces each, and its embeddings file exported by the tool."""
    root = tmp_path_factory.mktemp('emb')
    for seed, name in ((1, 'a'), (2, 'b')):
        (root / 'models' / name).mkdir(parents=True)
        _pixel_model(str(root / 'models' / name / 'm.pb'), seed)
    rng = np.random.RandomState(0)
    for k, person in enumerate(CLASSES):
        (root / 'faces' / person).mkdir(parents=True)
        for j in range(5):
            low = np.clip(rng.randint(0, 256, (4, 4, 3)) // 2 + 40 * k, 0, 255).astype(np.uint8)
            Image.fromarray(low).resize((SIZE, SIZE), Image.BICUBIC).save(
                str(root / 'faces' / person / ('%s_%04d.png' % (person, j + 1))))
    emb = str(root / 'emb.h5')
    assert _export(str(root / 'models' / 'a' / 'm.pb'), str(root / 'faces'), emb).code == 0
    return root, emb


def _export(model, data, out, *extra):
    return run_main(export_embeddings, [model, data, out, '--image_size', SIZE, '--batch_size', 5,
                                        '--chunk_size', 5] + list(extra))


def _craft(work, name, edit):
    """A copy of the good embeddings file named `name`, changed by edit(h5py.File)."""
    root, good = work
    path = str(root / 'crafted' / name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    shutil.copyfile(good, path)
    with h5py.File(path, 'r+') as f:
        edit(f)
    return path


def _replace(name, data, **kwargs):
    def edit(f):
        del f[name]
        f.create_dataset(name, data=data, **kwargs)
    return edit


def _train_refuses(work, tmp_path, crafted, *fragments):
    """classifier.py TRAIN on the crafted file: one line naming it, exit 2, no classifier written,
    the crafted file unchanged."""
    root, _ = work
    before = tree_hashes(crafted)
    pkl = tmp_path / 'out.pkl'
    result = run_main(classifier, ['TRAIN', crafted, str(root / 'models' / 'a' / 'm.pb'), pkl])
    assert_one_line_error(result, crafted, *fragments, code=2)
    assert os.listdir(str(tmp_path)) == []
    assert tree_hashes(crafted) == before
    return result


# ---------------------------------------------------------------------------------------------
# Embeddings files

def _strings(values):
    return np.array(values, dtype=object)


STRINGS = h5py.string_dtype('utf-8')


@pytest.mark.parametrize('name, edit, fragments', [
    ('short_labels.h5', _replace('labels', np.zeros(3, np.int64)), ('15 embedding rows but 3 labels',)),
    ('short_paths.h5', _replace('paths', _strings(['Bob/x.png']), dtype=STRINGS), ('but 15 labels and 1 paths',)),
    ('label_3.h5', lambda f: f['labels'].__setitem__(4, 3), ('label 3 of row 4 is not the index',)),
    ('label_minus_1.h5', lambda f: f['labels'].__setitem__(0, -1), ('label -1 of row 0',)),
    ('int_paths.h5', _replace('paths', np.arange(15)), ('paths is a 1-D int64 dataset, expected 1-D string',)),
    ('group.h5', lambda f: (f.__delitem__('embeddings'), f.create_group('embeddings')), ('embeddings is a Group',)),
    ('float64.h5', lambda f: _replace('embeddings', f['embeddings'][()].astype(np.float64))(f),
     ('embeddings is a 2-D float64 dataset, expected 2-D float32',)),
    ('rank1.h5', lambda f: _replace('embeddings', np.zeros(15, np.float32))(f), ('embeddings is a 1-D',)),
    ('nan.h5', lambda f: f['embeddings'].__setitem__((7, 2), np.nan), ('embedding row 7', 'NaN')),
    ('outside.h5', lambda f: f['paths'].__setitem__(2, '../../secret.key'), ("path '../../secret.key' of row 2",)),
    ('absolute.h5', lambda f: f['paths'].__setitem__(2, '/etc/passwd'), ("path '/etc/passwd' of row 2",)),
    ('other_class.h5', lambda f: f['paths'].__setitem__(0, 'Cy/Cy_0001.png'), ('is not <class>/<file> of its class',)),
    ('escape.h5', lambda f: f['class_names'].__setitem__(1, 'B\x1b[2Jb'), ('is not a folder name',)),
    ('plugin.h5', _replace('embeddings', np.zeros((15, DIM), np.float32), chunks=(5, DIM), compression=32001,
                           allow_unknown_filter=True), ('stored with HDF5 filter 32001',)),
    ('gzip.h5', _replace('labels', np.zeros(15, np.int64), chunks=(5,), compression='gzip', shuffle=True),
     ("path 'Bob/Bob_0001.png' of row 5 is not <class>/<file> of its class 'Ann_Lee'",)),  # gzip is read
    ('no_format.h5', lambda f: f.attrs.__delitem__('format'), ('not an embeddings file of format 1',)),
    ('array_attr.h5', lambda f: f.attrs.__setitem__('model', np.arange(3)),
     ('attribute model is not a single value',)),
], ids=lambda value: value if isinstance(value, str) and value.endswith('.h5') else '')
def test_malformed_embeddings_file_is_one_line(work, tmp_path, name, edit, fragments):
    _train_refuses(work, tmp_path, _craft(work, name, edit), *fragments)


def test_external_storage_link_and_virtual_dataset_are_refused(work, tmp_path):
    """HDF5 would read the embeddings from another file: a crafted embeddings file would copy a local
    file (here a secret) into the classifier it trains."""
    root, good = work
    (tmp_path / 'elsewhere').mkdir()
    secret, data = secret_file(tmp_path / 'elsewhere')
    rows = 1

    def external(f):
        del f['embeddings']
        f.create_dataset('embeddings', shape=(rows, 8), dtype=np.float32, external=[(secret, 0, len(data))])

    def link(f):
        del f['embeddings']
        f['embeddings'] = h5py.ExternalLink(good, '/embeddings')

    def virtual(f):
        shape = f['embeddings'].shape
        del f['embeddings']
        layout = h5py.VirtualLayout(shape, np.float32)
        layout[:] = h5py.VirtualSource(good, 'embeddings', shape)
        f.create_virtual_dataset('embeddings', layout)

    for name, edit, fragment in (('external.h5', external, 'external storage'), ('link.h5', link, 'ExternalLink'),
                                 ('virtual.h5', virtual, 'a virtual dataset')):
        out = tmp_path / 'out'
        out.mkdir(exist_ok=True)
        _train_refuses(work, out, _craft(work, name, edit), fragment)
        assert_not_in_tree(data, str(out))
        assert_not_in_tree(data, str(root / 'crafted'))


def test_huge_declared_shape_is_refused_before_reading(work, tmp_path):
    """A few kilobytes declaring 8 GiB of embeddings (unwritten compressed chunks read as zeros)."""
    def huge(f):
        del f['embeddings']
        f.create_dataset('embeddings', shape=(1 << 24, 128), dtype=np.float32, chunks=(1024, 128), compression='gzip')

    crafted = _craft(work, 'huge.h5', huge)
    assert os.path.getsize(crafted) < MIB
    with _Peak() as peak:
        _train_refuses(work, tmp_path, crafted, 'embeddings declares shape (16777216, 128)')
    assert peak.mib < 32, peak.mib


def test_classifier_data_that_is_neither_folder_nor_hdf5(work, tmp_path):
    text = tmp_path / 'faces.h5'
    text.write_text('Ann_Lee/Ann_Lee_0001.png\n')
    fifo = str(tmp_path / 'fifo.h5')
    os.mkfifo(fifo)
    for path in (str(text), fifo):
        result = run_main(classifier, ['TRAIN', path, work[0] / 'models' / 'a' / 'm.pb', tmp_path / 'out.pkl'])
        assert_one_line_error(result, path, 'neither a folder of aligned faces nor an embeddings file', code=2)
    assert sorted(os.listdir(str(tmp_path))) == ['faces.h5', 'fifo.h5']


def test_declared_sizes_do_not_set_the_memory_of_the_process(work, tmp_path):
    """classifier.py as a user runs it (HDF5 and the SVM library allocate outside Python's view):
    the 37-byte 3 GiB pickle and the few-kilobyte 8 GiB embeddings file stay near the interpreter's
    own size."""
    root, emb = work
    pkl = tmp_path / 'bytearray.pkl'
    pkl.write_bytes(BYTEARRAY_3GIB)
    huge = _craft(work, 'huge_process.h5', lambda f: (f.__delitem__('embeddings'), f.create_dataset(
        'embeddings', shape=(1 << 24, 128), dtype=np.float32, chunks=(1024, 128), compression='gzip')))
    # a forked child's peak counts this process's pages until it runs the tool: the bound is relative
    own_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    for argv, name in ((['CLASSIFY', emb, 'm.pb', pkl], pkl), (['TRAIN', huge, 'm.pb', tmp_path / 'out.pkl'], huge)):
        result = run_tool('classifier.py', argv)
        assert_one_line_error(result, name, code=2)
        assert result.peak_mib < own_mib + 300, (own_mib, result)
    assert sorted(os.listdir(str(tmp_path))) == ['bytearray.pkl']


def test_not_hdf5_truncated_and_fifo_are_one_line(work, tmp_path):
    root, good = work
    text = tmp_path / 'text.h5'
    text.write_text('embeddings\n')
    cut = tmp_path / 'cut.h5'
    cut.write_bytes(open(good, 'rb').read()[:3000])
    fifo = str(tmp_path / 'fifo.h5')
    os.mkfifo(fifo)
    for path, fragment in ((str(text), 'not an HDF5 file'), (str(cut), 'cannot read embeddings file'),
                           (fifo, 'not a regular file')):
        result = run_main(export_embeddings, ['--merge', tmp_path / 'merged.h5', path])
        assert_one_line_error(result, path, fragment, code=2)
    assert not (tmp_path / 'merged.h5').exists()


def _shard(work, name, shard, edit=None):
    def set_shard(f):
        f.attrs['shard'] = shard
        if edit:
            edit(f)
    return _craft(work, name, set_shard)


def test_merge_refuses_bad_shard_attributes_and_mixed_sizes(work, tmp_path):
    rows = 10  # Ann_Lee and Bob in shard 0, Cy in shard 1

    def keep(start, stop, dim=DIM):
        def edit(f):
            emb, labels, paths = f['embeddings'][start:stop], f['labels'][start:stop], f['paths'][start:stop]
            for name in ('embeddings', 'labels', 'paths'):
                del f[name]
            f.create_dataset('embeddings', data=emb[:, :dim])
            f.create_dataset('labels', data=labels)
            f.create_dataset('paths', data=paths, dtype=STRINGS)
        return edit

    first = _shard(work, 's0.h5', '0/2', keep(0, rows))
    merged = tmp_path / 'merged.h5'
    for shard, fragment in (('abc', "the shard attribute 'abc' is not INDEX/COUNT"),
                            ('3/2', "the shard attribute '3/2'"), ('1/0', "the shard attribute '1/0'")):
        bad = _shard(work, 'bad.h5', shard, keep(rows, 15))
        assert_one_line_error(run_main(export_embeddings, ['--merge', merged, first, bad]), bad, fragment, code=2)
    narrow = _shard(work, 'narrow.h5', '1/2', keep(rows, 15, 8))
    assert_one_line_error(run_main(export_embeddings, ['--merge', merged, first, narrow]), narrow,
                          'holds 8-D embeddings', code=2)
    twice = _shard(work, 'twice.h5', '1/2', keep(0, 15))
    assert_one_line_error(run_main(export_embeddings, ['--merge', merged, first, twice]), 'the same image twice',
                          code=2)
    assert not merged.exists()
    good = _shard(work, 's1.h5', '1/2', keep(rows, 15))
    assert run_main(export_embeddings, ['--merge', merged, good, first]).code == 0
    np.testing.assert_array_equal(embeddings_file.read(str(merged)).embeddings,
                                  embeddings_file.read(work[1]).embeddings)


def test_merge_does_not_replace_an_output_without_overwrite(work, tmp_path):
    root, good = work
    first = _shard(work, 'o0.h5', '0/1')
    mine = tmp_path / 'mine.h5'
    mine.write_bytes(b'my own results')
    # checked before any input is read: a missing input is not even looked at
    result = run_main(export_embeddings, ['--merge', mine, tmp_path / 'missing.h5'])
    assert_one_line_error(result, mine, 'exists already', '--overwrite', code=2)
    assert mine.read_bytes() == b'my own results'
    assert run_main(export_embeddings, ['--merge', mine, first, '--overwrite']).code == 0
    assert embeddings_file.read(str(mine)).paths == embeddings_file.read(good).paths
    assert sorted(os.listdir(str(tmp_path))) == ['mine.h5']


def test_validate_on_lfw_refuses_a_bad_embeddings_file(work, tmp_path):
    crafted = _craft(work, 'nan_validate.h5', lambda f: f['embeddings'].__setitem__((0, 0), np.inf))
    pairs = tmp_path / 'pairs.txt'
    pairs.write_text('2\nBob\t1\t2\nAnn_Lee\t1\tCy\t1\n')
    result = run_main(validate_on_lfw, [crafted, work[0] / 'models' / 'a' / 'm.pb', '--lfw_pairs', pairs,
                                        '--lfw_nrof_folds', 2])
    assert_one_line_error(result, crafted, 'embedding row 0', code=2)


# ---------------------------------------------------------------------------------------------
# Classifier files

def _trained(n_dim=DIM, classes=3, seed=0):
    rng = np.random.RandomState(seed)
    labels = np.arange(30) % classes
    emb = (rng.randn(classes, n_dim)[labels] + 0.1 * rng.randn(30, n_dim)).astype(np.float32)
    return classify.train(emb / np.linalg.norm(emb, axis=1, keepdims=True), labels)


def _classify(work, pkl):
    root, emb = work
    return run_main(classifier, ['CLASSIFY', emb, root / 'models' / 'a' / 'm.pb', pkl])


class _Reduce:
    def __init__(self, *reduce):
        self.reduce = reduce

    def __reduce__(self):
        return self.reduce


def _damaged(**attrs):
    model = _trained()
    for name, value in attrs.items():
        setattr(model, name, value(getattr(model, name)))
    return pickle.dumps((model, list(CLASSES)), protocol=4)


RECONSTRUCT = np.zeros(1).__reduce__()[0]  # numpy's _reconstruct
BYTEARRAY_3GIB = b'\x80\x02cbuiltins\nbytearray\n\x8a\x05' + (3 << 30).to_bytes(5, 'little') + b'\x85R.'
RECONSTRUCT_HUGE = (b'\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n\x8a\x05'
                    + (3 << 30).to_bytes(5, 'little') + b'\x85C\x01b\x87R.')


@pytest.mark.parametrize('name, data, fragments', [
    ('bytearray.pkl', BYTEARRAY_3GIB, ('refused to load builtins.bytearray',)),
    ('reconstruct.pkl', RECONSTRUCT_HUGE, ('is not a classifier file', 'array reconstruction')),
    ('state.pkl', pickle.dumps(_Reduce(RECONSTRUCT, (np.ndarray, (0,), b'b'), (1, (1 << 28,), np.dtype('f8'), False,
                                                                              b'\0' * 8))),
     ('is not a classifier file', 'array of shape (268435456,)')),
    ('objects.pkl', pickle.dumps((np.array([1, 'x'], dtype=object), ['a', 'b'])), ('array of Python objects',)),
    ('knn.pkl', pickle.dumps((KNeighborsClassifier(1).fit(np.eye(3), [0, 1, 2]), list(CLASSES))),
     ('refused to load sklearn.neighbors._classification.KNeighborsClassifier',)),
    ('one_class.pkl', pickle.dumps((_trained(), ['only'])), ('at least two classes, the file names 1',)),
    ('n_support.pkl', _damaged(_n_support=lambda v: v * 3), ('support vector counts',)),
    ('dual_coef.pkl', _damaged(_dual_coef_=lambda v: v[:, :3]), ('_dual_coef_ is not of shape (2,',)),
    ('dims.pkl', _damaged(support_vectors_=lambda v: np.ascontiguousarray(v[:, :5])), ('support vectors of shape',)),
    ('classes.pkl', _damaged(classes_=lambda v: v + 5), ("classes are not distinct indexes",)),
    ('shape_fit.pkl', _damaged(shape_fit_=lambda v: (v[0], 99)), ('fitted on data of another shape',)),
    ('fortran.pkl', _damaged(_dual_coef_=np.asfortranarray), ('_dual_coef_ is not a 2-D float64 array in C order',)),
    ('kernel.pkl', _damaged(kernel=lambda v: 'precomputed'), ("unknown SVC kernel 'precomputed'",)),
    ('names.pkl', pickle.dumps((_trained(), [1, 2, 3])), ('class names are not a list of strings',)),
    ('bare.pkl', pickle.dumps(_trained()), ('expected a pickle of (model, class_names), got SVC',)),
    ('truncated.pkl', pickle.dumps((_trained(), list(CLASSES)))[:500], ('is not a classifier file',)),
    ('text.pkl', b'name,embedding\n', ('is not a classifier file',)),
], ids=lambda value: value if isinstance(value, str) and value.endswith('.pkl') else '')
def test_hostile_classifier_file_is_one_line(work, tmp_path, name, data, fragments):
    pkl = tmp_path / name
    pkl.write_bytes(data)
    with _Peak() as peak:
        result = _classify(work, pkl)
    assert_one_line_error(result, pkl, *fragments, code=2)
    assert peak.mib < 64, peak.mib
    assert os.listdir(str(tmp_path)) == [name] and pkl.read_bytes() == data


def test_classifier_file_of_every_protocol_classifies(work, tmp_path):
    root, emb = work
    train = run_main(classifier, ['TRAIN', emb, root / 'models' / 'a' / 'm.pb', tmp_path / 'c.pkl'])
    assert train.code == 0, train
    with open(str(tmp_path / 'c.pkl'), 'rb') as f:
        content = pickle.load(f)
    outputs = []
    for protocol in (0, 2, 5):
        (tmp_path / ('p%d.pkl' % protocol)).write_bytes(pickle.dumps(content, protocol=protocol))
        result = _classify(work, tmp_path / ('p%d.pkl' % protocol))
        assert result.code == 0, result
        outputs.append(result.out.replace('p%d.pkl' % protocol, ''))
    assert outputs[0] == outputs[1] == outputs[2] and 'Accuracy: ' in outputs[0]


def test_fifo_classifier_file_and_other_embedding_size(work, tmp_path):
    fifo = str(tmp_path / 'fifo.pkl')
    os.mkfifo(fifo)
    assert_one_line_error(_classify(work, fifo), fifo, 'not a regular file', code=2)
    other = str(tmp_path / 'eight.pkl')
    classify.save(other, _trained(n_dim=8), list(CLASSES))
    assert_one_line_error(_classify(work, other), other, 'takes 8-D embeddings, got 16-D', code=2)


def test_train_does_not_replace_a_classifier_without_overwrite(work, tmp_path):
    root, emb = work
    pkl = tmp_path / 'mine.pkl'
    pkl.write_bytes(b'my classifier')
    # refused before the data or the model is looked at: both are missing here
    result = run_main(classifier, ['TRAIN', tmp_path / 'no_faces', tmp_path / 'no_model.pb', pkl])
    assert_one_line_error(result, pkl, 'exists already', '--overwrite', code=2)
    assert pkl.read_bytes() == b'my classifier'
    assert run_main(classifier, ['TRAIN', emb, tmp_path / 'no_model.pb', pkl, '--overwrite']).code == 0
    model, names = classify.load(str(pkl))
    assert names == ['Ann Lee', 'Bob', 'Cy'] and model.n_features_in_ == DIM
    assert os.listdir(str(tmp_path)) == ['mine.pkl']


# ---------------------------------------------------------------------------------------------
# Resumed exports

def _interrupted(work, model, out):
    """Export `out` with the chunks all saved but the run stopped before the file is written (as a
    kill right then): the `.partial` folder is left."""
    root, _ = work
    original = embeddings_file.write

    def stop(*args):
        raise KeyboardInterrupt

    embeddings_file.write = stop
    try:
        assert _export(model, str(root / 'faces'), out).code == 130
    finally:
        embeddings_file.write = original
    chunks = sorted(glob.glob(out + '.partial/chunk_*.npz'))
    assert len(chunks) == 3 and not os.path.exists(out)
    return chunks


def test_damaged_chunk_is_computed_again(work, tmp_path):
    """A zero-byte chunk (as a full disk or a crash of the machine leaves) is redone, with the chunks
    after it; the file is the one of an uninterrupted run."""
    root, good = work
    out = str(tmp_path / 'emb.h5')
    chunks = _interrupted(work, str(root / 'models' / 'a' / 'm.pb'), out)
    open(chunks[1], 'wb').close()
    result = _export(str(root / 'models' / 'a' / 'm.pb'), str(root / 'faces'), out)
    assert result.code == 0 and 'Resumed at chunk 1 of 3 (5 of 15 images' in result.err, result
    a, b = embeddings_file.read(good), embeddings_file.read(out)
    assert a.paths == b.paths and a.embeddings.tobytes() == b.embeddings.tobytes()
    assert os.listdir(str(tmp_path)) == ['emb.h5']


def _npz(path, **arrays):
    """An .npz of arrays given as arrays, or as (header dict, raw bytes) to declare anything."""
    with zipfile.ZipFile(path, 'w') as z:
        for name, value in arrays.items():
            with z.open(name + '.npy', 'w') as f:
                if isinstance(value, tuple):
                    np.lib.format.write_array_header_1_0(f, value[0])
                    f.write(value[1])
                else:
                    np.lib.format.write_array(f, value, allow_pickle=True)


def test_chunks_that_are_not_complete_are_found_without_reading_them(tmp_path):
    """Each damaged chunk ends the complete run there; nothing is unpickled and no declared size is
    allocated."""
    sizes = [2, 3]
    rows = np.ones((2, DIM), np.float32)
    damaged = {
        'truncated': lambda p: open(p, 'wb').write(open(p + '.good', 'rb').read()[:200]),
        'huge ok': lambda p: _npz(p, ok=({'descr': '|b1', 'fortran_order': False, 'shape': (10 ** 10,)}, b'\1\1'),
                                  embeddings=rows),
        'huge rows': lambda p: _npz(p, ok=np.ones(2, bool), embeddings=(
            {'descr': '<f4', 'fortran_order': False, 'shape': (2, 1 << 30)}, rows.tobytes())),
        'short data': lambda p: _npz(p, ok=np.ones(2, bool), embeddings=(
            {'descr': '<f4', 'fortran_order': False, 'shape': (2, DIM)}, rows.tobytes()[:-4])),
        'objects': lambda p: _npz(p, ok=np.ones(2, bool), embeddings=np.array([[1], ['x']], dtype=object)),
        'no member': lambda p: _npz(p, ok=np.ones(2, bool)),
        'not a zip': lambda p: open(p, 'wb').write(b'PK but not a zip'),
    }
    for name, damage in damaged.items():
        out = str(tmp_path / name.replace(' ', '_'))
        partial = embeddings_file.PartialRun(out, {'plan': name})
        partial.save(0, [True, True], rows)
        partial.save(1, [True, False, True], rows)
        first = partial._chunk_path(0)
        shutil.copyfile(first, first + '.good')
        damage(first)
        os.remove(first + '.good')
        with _Peak() as peak:
            assert partial.complete(sizes) == 0, name
        assert peak.mib < 16, (name, peak.mib)
        assert sorted(os.listdir(partial.folder)) == ['plan.json'], name
    partial.save(0, [True, True], rows)
    partial.save(1, [True, False, True], np.ones((2, DIM + 1), np.float32))  # rows of another size
    assert partial.complete(sizes) == 1


def test_resume_with_another_model_of_the_same_name_starts_again(work, tmp_path):
    root, good = work
    model = tmp_path / 'model' / 'm.pb'
    model.parent.mkdir()
    shutil.copyfile(str(root / 'models' / 'a' / 'm.pb'), str(model))
    out = str(tmp_path / 'emb.h5')
    _interrupted(work, str(model), out)
    shutil.copyfile(str(root / 'models' / 'b' / 'm.pb'), str(model))  # another model, same file name
    result = _export(str(model), str(root / 'faces'), out)
    assert result.code == 0 and 'other inputs, settings or model file: starting again' in result.err
    fresh = str(tmp_path / 'fresh.h5')
    assert _export(str(root / 'models' / 'b' / 'm.pb'), str(root / 'faces'), fresh).code == 0
    a, b = embeddings_file.read(fresh), embeddings_file.read(out)
    assert a.paths == b.paths and a.embeddings.tobytes() == b.embeddings.tobytes()
    assert a.embeddings.tobytes() != embeddings_file.read(good).embeddings.tobytes()


def test_partial_folder_with_foreign_files_is_not_emptied(work, tmp_path):
    root, _ = work
    out = str(tmp_path / 'emb.h5')
    os.makedirs(out + '.partial')
    with open(os.path.join(out + '.partial', 'notes.txt'), 'w') as f:
        f.write('mine')
    result = _export(str(root / 'models' / 'a' / 'm.pb'), str(root / 'faces'), out)
    assert_one_line_error(result, out + '.partial', 'notes.txt', code=2)
    assert open(os.path.join(out + '.partial', 'notes.txt')).read() == 'mine' and not os.path.exists(out)


def test_a_model_that_does_not_load_leaves_nothing(work, tmp_path):
    root, _ = work
    model = tmp_path / 'model.pb'
    model.write_bytes(b'not a graph')
    out = tmp_path / 'out' / 'emb.h5'
    out.parent.mkdir()
    result = _export(model, root / 'faces', out)
    assert_one_line_error(result, model, code=2)
    assert os.listdir(str(out.parent)) == []
