"""Model files: classic folder layout, load_model errors, and freezing to an inference-only .pb."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from facenet_tf import model_io
from facenet_tf.errors import FaceNetError

tf1 = tf.compat.v1
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tiny_training_graph():
    """A small real training-style graph: images come from a queue through `input`, batch norm
    switches on `phase_train` with tf.cond, embeddings are L2-normalised (as the classic graphs)."""
    queue = tf1.FIFOQueue(10, [tf.float32, tf.int64], shapes=[(8, 8, 3), ()])
    images, labels = queue.dequeue_up_to(2)
    image_batch = tf.identity(images, 'image_batch')
    inputs = tf.identity(image_batch, 'input')
    tf.identity(labels, 'label_batch')
    phase_train = tf1.placeholder(tf.bool, name='phase_train')
    w = tf1.get_variable('Net/Conv/weights', [3, 3, 3, 4])
    net = tf.nn.conv2d(inputs, w, [1, 1, 1, 1], 'SAME')
    mean_v = tf1.get_variable('Net/Conv/BatchNorm/moving_mean', [4], initializer=tf1.zeros_initializer(),
                              trainable=False)
    var_v = tf1.get_variable('Net/Conv/BatchNorm/moving_variance', [4], initializer=tf1.ones_initializer(),
                             trainable=False)
    beta = tf1.get_variable('Net/Conv/BatchNorm/beta', [4], initializer=tf1.zeros_initializer())

    def train_branch():
        m, v = tf.nn.moments(net, [0, 1, 2])
        return m, v

    mean, var = tf1.cond(phase_train, train_branch, lambda: (tf.identity(mean_v), tf.identity(var_v)))
    net = tf.nn.relu(tf.nn.batch_normalization(net, mean, var, beta, None, 1e-3))
    pre = tf.reduce_mean(net, [1, 2])
    tf.nn.l2_normalize(pre, 1, 1e-10, name='embeddings')


@pytest.fixture(scope='module')
def model_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('model'))
    with tf1.Graph().as_default():
        _tiny_training_graph()
        rng = np.random.RandomState(0)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            for v in tf1.global_variables():
                v.load(rng.uniform(0.5, 1.5, v.shape.as_list()).astype(np.float32), sess)
            saver = tf1.train.Saver(tf1.trainable_variables() + [v for v in tf1.global_variables()
                                                                if 'moving' in v.name])
            model_io.save_variables_and_metagraph(sess, saver, None, out, '20260101-000000', 3)
            model_io.save_variables_and_metagraph(sess, saver, None, out, '20260101-000000', 7)
    return out


def _embed(model, images, **feed_extra):
    with tf1.Graph().as_default():
        with tf1.Session() as sess:
            model_io.load_model(model, session=sess)
            g = sess.graph
            feed = {g.get_tensor_by_name('input:0'): images, g.get_tensor_by_name('phase_train:0'): False}
            return sess.run(g.get_tensor_by_name('embeddings:0'), feed)


def test_classic_layout_written(model_dir):
    files = sorted(os.listdir(model_dir))
    assert files.count('model-20260101-000000.meta') == 1
    assert 'model-20260101-000000.ckpt-7.index' in files
    assert 'model-20260101-000000.ckpt-3.index' in files
    assert model_io.get_model_filenames(model_dir) == ('model-20260101-000000.meta',
                                                       'model-20260101-000000.ckpt-7')


def test_highest_step_without_checkpoint_file(model_dir, tmp_path):
    copy = str(tmp_path / 'm')
    shutil.copytree(model_dir, copy)
    os.remove(os.path.join(copy, 'checkpoint'))
    assert model_io.get_model_filenames(copy)[1] == 'model-20260101-000000.ckpt-7'


def test_freeze_matches_checkpoint(model_dir, tmp_path):
    images = np.random.RandomState(1).uniform(-1, 1, (3, 8, 8, 3)).astype(np.float32)
    ref = _embed(model_dir, images)
    pb = str(tmp_path / 'frozen.pb')
    nodes = model_io.freeze_model(model_dir, pb)
    frozen = _embed(pb, images)
    assert np.abs(ref - frozen).max() < 1e-6
    graph_def = model_io.read_graph_def(pb)
    assert len(graph_def.node) == nodes
    ops = {n.op for n in graph_def.node}
    assert not ops & {'VariableV2', 'VarHandleOp', 'Switch', 'RefSwitch', 'Merge', 'FIFOQueueV2',
                      'QueueDequeueManyV2'}
    names = {n.name for n in graph_def.node}
    assert {'input', 'phase_train', 'embeddings', 'label_batch'} <= names
    assert not any('moments' in n for n in names)


def test_freeze_graph_script(model_dir, tmp_path):
    pb = str(tmp_path / 'm.pb')
    r = subprocess.run([sys.executable, os.path.join(ROOT, 'src', 'freeze_graph.py'), model_dir, pb],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert 'ops in the final graph' in r.stdout and os.path.isfile(pb)
    r = subprocess.run([sys.executable, os.path.join(ROOT, 'src', 'freeze_graph.py'),
                        str(tmp_path / 'nowhere'), pb], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().count('\n') == 0 and 'not found' in r.stderr


def test_load_model_errors(model_dir, tmp_path):
    with pytest.raises(FaceNetError, match='not found'):
        model_io.load_model(str(tmp_path / 'missing'))
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(FaceNetError, match='no .meta'):
        model_io.get_model_filenames(str(empty))
    two = tmp_path / 'two'
    shutil.copytree(model_dir, str(two))
    shutil.copy(str(two / 'model-20260101-000000.meta'), str(two / 'model-other.meta'))
    with pytest.raises(FaceNetError, match='more than one .meta'):
        model_io.get_model_filenames(str(two))
    nockpt = tmp_path / 'nockpt'
    nockpt.mkdir()
    shutil.copy(os.path.join(model_dir, 'model-20260101-000000.meta'), str(nockpt))
    with pytest.raises(FaceNetError, match='no checkpoint'):
        model_io.get_model_filenames(str(nockpt))
    bad = tmp_path / 'bad.pb'
    bad.write_bytes(b'\x00garbage' * 10)
    with tf1.Graph().as_default():
        with pytest.raises(FaceNetError, match='not a frozen'):
            model_io.load_model(str(bad))


def test_moving_averages_need_a_checkpoint_that_has_them(model_dir, tmp_path):
    pb = str(tmp_path / 'frozen.pb')
    model_io.freeze_model(model_dir, pb)
    with tf1.Graph().as_default(), tf1.Session() as sess:
        with pytest.raises(FaceNetError, match='frozen graph'):
            model_io.load_model(pb, session=sess, use_moving_averages=True)
    with tf1.Graph().as_default(), tf1.Session() as sess:
        with pytest.raises(FaceNetError, match='no moving averages'):
            model_io.load_model(model_dir, session=sess, use_moving_averages=True)


def test_missing_tensor_is_named(tmp_path):
    with tf1.Graph().as_default() as g:
        tf1.placeholder(tf.float32, [None, 4], name='input')
        pb = str(tmp_path / 'noemb.pb')
        with open(pb, 'wb') as f:
            f.write(g.as_graph_def().SerializeToString())
    with tf1.Graph().as_default():
        with pytest.raises(FaceNetError, match='embeddings:0'):
            model_io.load_model(pb)


def test_tflite_export_gives_reference_embeddings(reference_dir, ref_checkpoint, tmp_path):
    """The published-format network, frozen then converted, embeds the reference crops as the classic code."""
    import warnings

    from lfw_refmodel import reference_embeddings
    model_dir = ref_checkpoint
    out = str(tmp_path / 'ref.tflite')
    r = subprocess.run([sys.executable, os.path.join(ROOT, 'src', 'export_tflite.py'), model_dir, out],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert os.listdir(str(tmp_path)) == ['ref.tflite']  # and nothing written beside the model
    assert sorted(os.listdir(model_dir)) == ['checkpoint', 'model-20260101-000000.ckpt-1.data-00000-of-00001',
                                             'model-20260101-000000.ckpt-1.index', 'model-20260101-000000.meta']
    inputs = np.load(os.path.join(reference_dir, 'embeddings', 'seed1.npz'))['input_numpy_prewhiten']
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        interp = tf.lite.Interpreter(model_path=out)
    interp.allocate_tensors()
    inp, outp = interp.get_input_details()[0]['index'], interp.get_output_details()[0]['index']
    got = []
    for x in inputs.astype(np.float32):
        interp.set_tensor(inp, x[None])
        interp.invoke()
        got.append(interp.get_tensor(outp)[0])
    assert np.abs(np.array(got) - reference_embeddings(reference_dir, 'numpy_prewhiten')).max() < 1e-5
