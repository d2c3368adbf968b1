"""import_keras_model.py: the published facenet_keras.h5 becomes a classic model folder and .pb whose
weights are the file's, bit for bit, and whose embeddings are those of the project's own network
filled with the same weights in memory."""
import json
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
import tensorflow as tf

from facenet_tf import import_model as import_keras_model
from facenet_tf import embedding, images, keras_import, model_io
from facenet_tf.cli import run
from facenet_tf.errors import FaceNetError
from facenet_tf.models import inception_resnet_v1

tf1 = tf.compat.v1
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, 'src', 'import_keras_model.py')
CLASSIC_TENSORS = ('image_batch', 'label_batch', 'input', 'phase_train', 'embeddings')


def _h5_weights(path):
    """{Keras weight name: array}, read here without the module under test."""
    out = {}
    with h5py.File(path, 'r') as f:
        for layer in f['model_weights'].attrs['layer_names']:
            group = f['model_weights'][layer.decode()]
            for name in group.attrs['weight_names']:
                out[name.decode()] = group[name.decode()][()]
    return out


def _faces(n):
    """n prewhitened 160x160 images of smooth random patterns (any input shows the two graphs equal)."""
    rng = np.random.RandomState(0)
    small = rng.randint(0, 256, (n, 10, 10, 3)).astype(np.uint8)
    return np.stack([images.prewhiten(np.kron(img, np.ones((16, 16, 1), np.uint8))) for img in small]
                    ).astype(np.float32)


def _in_memory_embeddings(keras_h5, faces):
    """The network built by models.inception_resnet_v1 (inference branch only) with every variable
    assigned its h5 value by the name rule of the issue, no file written."""
    weights = {keras_import.classic_name(k): v for k, v in _h5_weights(keras_h5).items()}
    with tf1.Graph().as_default():
        x = tf1.placeholder(tf.float32, [None, 160, 160, 3])
        prelogits, _ = inception_resnet_v1.inference(x, 1.0, phase_train=False, bottleneck_layer_size=128)
        emb = tf.nn.l2_normalize(prelogits, 1, 1e-10)
        with tf1.Session() as sess:
            for var in tf1.global_variables():
                var.load(weights[var.op.name], sess)
            return sess.run(emb, {x: faces})


def test_weights_round_trip_exactly(keras_h5, published_model, test_data_dir):
    folder, _ = published_model
    h5 = _h5_weights(keras_h5)
    reader = tf.train.load_checkpoint(os.path.join(folder, 'model-20170512-110547.ckpt-0'))
    saved = reader.get_variable_to_shape_map()
    assert len(h5) == 490 and len(saved) == 490
    mapped = {keras_import.classic_name(k): k for k in h5}
    assert set(mapped) == set(saved)
    for name, keras_name in mapped.items():
        assert np.array_equal(reader.get_tensor(name), h5[keras_name]), name
    # the classic variable list of the published checkpoints (512-D there, 128-D here)
    with open(os.path.join(test_data_dir, 'inception_resnet_v1_512_variables.json')) as f:
        classic = {row[0]: row[1] for row in json.load(f)['variables']}
    assert set(classic) == set(saved)
    assert all(list(saved[n]) == classic[n] for n in saved if 'Bottleneck' not in n)


@pytest.fixture(scope='module')
def in_memory(keras_h5):
    """(8 generated faces, their embeddings by the network filled in memory)."""
    faces = _faces(8)
    return faces, _in_memory_embeddings(keras_h5, faces)


def test_embeddings_equal_the_network_filled_in_memory(published_model, in_memory):
    faces, expected = in_memory
    for model in published_model:
        with tf1.Graph().as_default():
            with tf1.Session() as sess:
                embedding.load_for_inference(model, sess)
                x, phase_train, emb = embedding.model_tensors(sess.graph)
                got = sess.run(emb, {x: faces, phase_train: False})
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_graph_has_the_classic_tensor_names_and_classic_input_map(published_model, in_memory):
    """The classic validate_on_lfw maps image_batch, label_batch and phase_train at load time."""
    folder, _ = published_model
    faces, expected = in_memory[0][:3], in_memory[1][:3]
    with tf1.Graph().as_default() as graph:
        with tf1.Session() as sess:
            image_batch = tf1.placeholder(tf.float32, [None, 160, 160, 3])
            label_batch = tf1.placeholder(tf.int32, [None])
            phase_train = tf1.placeholder(tf.bool)
            model_io.load_model(folder, input_map={'image_batch': image_batch, 'label_batch': label_batch,
                                                   'phase_train': phase_train})
            for name in CLASSIC_TENSORS:
                graph.get_operation_by_name(name)
            got = sess.run('embeddings:0', {image_batch: faces, phase_train: False})
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_script_writes_folder_and_pb(published_model):
    folder, pb = published_model
    assert sorted(os.listdir(folder)) == [
        'checkpoint', 'model-20170512-110547.ckpt-0.data-00000-of-00001', 'model-20170512-110547.ckpt-0.index',
        'model-20170512-110547.meta']
    with open(os.path.join(os.path.dirname(folder), 'import.log')) as f:
        log = f.read()
    assert 'read 490 weights' in log and 'embedding size 128' in log and '(490 variables)' in log
    assert os.path.getsize(pb) > 80e6


def _copy_without(keras_h5, path, drop=None, reshape=None):
    """A copy of the .h5 without one weight (removed from its layer's weight_names) or with one
    weight replaced by an array of another shape."""
    shutil.copy(keras_h5, path)
    with h5py.File(path, 'r+') as f:
        group = f['model_weights'][(drop or reshape).split('/')[0]]
        if drop:
            names = [n for n in group.attrs['weight_names'] if n.decode() != drop]
            group.attrs['weight_names'] = names
        else:
            shape = group[reshape].shape
            del group[reshape]
            group[reshape] = np.zeros(shape[:-1] + (shape[-1] + 1,), np.float32)


def _script_error(capsys, *argv):
    """The one error line of import_keras_model.py run in-process (exit code 2)."""
    code = run(import_keras_model.main, import_keras_model.parse_arguments([str(a) for a in argv]),
               'import_keras_model.py')
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('import_keras_model.py: error: '), lines
    return lines[0]


def test_not_hdf5_is_one_line_from_the_command_line(tmp_path):
    text = tmp_path / 'notes.h5'
    text.write_text('not a model')
    out = subprocess.run([sys.executable, SCRIPT, str(text), str(tmp_path / 'a')], capture_output=True, text=True,
                         cwd=ROOT)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        'import_keras_model.py: error: %s is not an HDF5 file (expected a Keras .h5 model such as facenet_keras.h5)'
        % text]
    assert not os.path.exists(tmp_path / 'a')


def test_bad_files_give_one_line_errors(keras_h5, tmp_path, capsys):
    with h5py.File(tmp_path / 'other.h5', 'w') as f:
        f.attrs['layer_names'] = [b'dense_1']
        f.create_group('dense_1').attrs['weight_names'] = [b'dense_1/kernel:0']
        f['dense_1']['dense_1/kernel:0'] = np.zeros((4, 2), np.float32)
    assert 'unknown layer names (dense_1/kernel:0)' in _script_error(capsys, tmp_path / 'other.h5', tmp_path / 'b')
    _copy_without(keras_h5, tmp_path / 'missing.h5', drop='Block17_4_Conv2d_1x1/bias:0')
    line = _script_error(capsys, tmp_path / 'missing.h5', tmp_path / 'c')
    assert 'lacks 1 of the network\'s 490 weights (InceptionResnetV1/Repeat_1/block17_4/Conv2d_1x1/biases)' in line
    _copy_without(keras_h5, tmp_path / 'shape.h5', reshape='Mixed_6a_Branch_0_Conv2d_1a_3x3/kernel:0')
    line = _script_error(capsys, tmp_path / 'shape.h5', tmp_path / 'd')
    assert 'wrong shape for 1 weight (InceptionResnetV1/Mixed_6a/Branch_0/Conv2d_1a_3x3/weights: ' \
           '(3, 3, 256, 385) in the file, (3, 3, 256, 384) in the network)' in line
    assert 'not found' in _script_error(capsys, tmp_path / 'absent.h5', tmp_path / 'e')
    assert not any(os.path.exists(tmp_path / d) for d in 'bcde')
    assert not [p for p in os.listdir(tmp_path) if p.endswith('.importing')]


def test_existing_folder_is_not_overwritten(keras_h5, tmp_path, capsys):
    folder = tmp_path / 'mine'
    folder.mkdir()
    (folder / 'notes.txt').write_text('keep me')
    assert 'is not an empty folder' in _script_error(capsys, keras_h5, folder)
    assert (folder / 'notes.txt').read_text() == 'keep me'


def test_name_rule():
    rule = keras_import.classic_name
    assert rule('Conv2d_1a_3x3/kernel:0') == 'InceptionResnetV1/Conv2d_1a_3x3/weights'
    assert rule('Conv2d_4b_3x3_BatchNorm/moving_mean:0') == 'InceptionResnetV1/Conv2d_4b_3x3/BatchNorm/moving_mean'
    assert rule('Block35_3_Branch_1_Conv2d_0a_1x1/kernel:0') == \
        'InceptionResnetV1/Repeat/block35_3/Branch_1/Conv2d_0a_1x1/weights'
    assert rule('Block17_10_Conv2d_1x1/bias:0') == 'InceptionResnetV1/Repeat_1/block17_10/Conv2d_1x1/biases'
    assert rule('Block8_5_Branch_0_Conv2d_1x1_BatchNorm/beta:0') == \
        'InceptionResnetV1/Repeat_2/block8_5/Branch_0/Conv2d_1x1/BatchNorm/beta'
    assert rule('Block8_6_Conv2d_1x1/kernel:0') == 'InceptionResnetV1/Block8/Conv2d_1x1/weights'
    assert rule('Mixed_7a_Branch_2_Conv2d_1a_3x3/kernel:0') == 'InceptionResnetV1/Mixed_7a/Branch_2/Conv2d_1a_3x3/weights'
    assert rule('Bottleneck/kernel:0') == 'InceptionResnetV1/Bottleneck/weights'
    assert rule('Bottleneck_BatchNorm/moving_variance:0') == 'InceptionResnetV1/Bottleneck/BatchNorm/moving_variance'
    assert rule('Bottleneck_BatchNorm/gamma:0') is None
    assert rule('dense_1/kernel:0') is None
    with pytest.raises(FaceNetError, match='2 weights with unknown layer names'):
        keras_import.classic_weights({'a/kernel:0': 0, 'b/bias:0': 0})
