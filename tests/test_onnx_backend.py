"""`--backend onnx`: a .pb or checkpoint folder converted once to ONNX into the cache
(facenet_tf.onnx_cache) and run by onnxruntime through the tools, with TensorFlow's embeddings; the
cache is reused, kept under $FACENET_TF_HOME, keyed by the model's bytes and settings; misuses are
one-line errors."""
import os
import re
import sys

import numpy as np
import pytest

from facenet_tf import onnx_cache, runtimes
from facenet_tf.errors import FaceNetError
from hostile import assert_one_line_error, run_main

pytest.importorskip('onnxruntime')
pytest.importorskip('tf2onnx')
pytest.importorskip('onnx')

LFW = 'lfw_deepfunneled'


@pytest.fixture
def home(tmp_path, monkeypatch):
    """$FACENET_TF_HOME pointed at a fresh folder: the tests never touch the real cache."""
    folder = tmp_path / 'home'
    monkeypatch.setenv('FACENET_TF_HOME', str(folder))
    return folder


@pytest.fixture(scope='module')
def crops(photos):
    from facenet_tf.export_tflite import representative_crops
    return representative_crops(photos, 160, 6)


@pytest.fixture(scope='module')
def tiny_checkpoint(tmp_path_factory):
    """A classic checkpoint folder (model-tiny.meta, model-tiny.ckpt-1.*, checkpoint) of a small
    convolution whose kernel has a moving average different from the kernel itself."""
    from facenet_tf import tf_setup
    tf = tf_setup.configure()
    tf1 = tf.compat.v1
    folder = str(tmp_path_factory.mktemp('tiny_checkpoint'))
    rng = np.random.default_rng(2)
    with tf1.Graph().as_default() as graph, tf1.Session(graph=graph) as sess:
        images = tf1.placeholder(tf.float32, [None, 160, 160, 3], name='input')
        tf1.placeholder_with_default(False, [], name='phase_train')
        kernel = tf1.get_variable('kernel', initializer=rng.normal(0.0, 0.1, (5, 5, 3, 8)).astype(np.float32))
        features = tf.nn.relu(tf.nn.conv2d(images, kernel, 4, 'VALID'))
        tf.nn.l2_normalize(tf.reshape(tf.nn.avg_pool2d(features, 4, 4, 'VALID'), [-1, 648]), 1, 1e-10,
                           name='embeddings')
        average = tf1.train.ExponentialMovingAverage(0.9)
        average.apply([kernel])
        sess.run(tf1.global_variables_initializer())
        sess.run(average.average(kernel).assign(rng.normal(0.0, 0.1, (5, 5, 3, 8)).astype(np.float32)))
        saver = tf1.train.Saver()
        saver.save(sess, os.path.join(folder, 'model-tiny.ckpt'), global_step=1, write_meta_graph=False)
        saver.export_meta_graph(os.path.join(folder, 'model-tiny.meta'))
    return folder


def _cached_files(home):
    folder = home / 'onnx'
    return sorted(os.listdir(str(folder))) if folder.is_dir() else []


def test_export_embeddings_with_backend_onnx_converts_once(tiny_pb, photos, home, tmp_path):
    """export_embeddings.py --backend onnx on 6 LFW photos: TensorFlow's rows within 1e-5; the first
    run converts into $FACENET_TF_HOME/onnx with one note, the second reuses the file untouched."""
    from facenet_tf import embeddings_file, export_embeddings
    rows, runs = {}, {}
    for name, backend in (('tf', 'tf'), ('onnx', 'onnx'), ('again', 'onnx')):
        out = str(tmp_path / ('%s.h5' % name))
        runs[name] = run_main(export_embeddings, [tiny_pb, photos, out, '--batch_size', '4', '--backend', backend])
        assert runs[name].code == 0, runs[name]
        rows[name] = embeddings_file.read(out)
        if name == 'onnx':
            cached = _cached_files(home)
            assert len(cached) == 1 and re.match(r'^[0-9a-f]{32}\.onnx$', cached[0]), cached
            path = str(home / 'onnx' / cached[0])
            stamp = os.stat(path).st_mtime_ns
    assert len(rows['tf'].paths) == 6 and rows['tf'].paths == rows['onnx'].paths == rows['again'].paths
    assert np.abs(rows['tf'].embeddings - rows['onnx'].embeddings).max() < 1e-5
    assert np.array_equal(rows['onnx'].embeddings, rows['again'].embeddings)
    assert 'to ONNX' not in runs['tf'].err
    assert 'converting %s to ONNX once (cached in %s)' % (tiny_pb, path) in runs['onnx'].err
    assert 'to ONNX' not in runs['again'].err
    assert _cached_files(home) == cached and os.stat(path).st_mtime_ns == stamp   # no second conversion
    assert os.listdir(str(home)) == ['onnx']   # nothing else written in the cache


def test_checkpoint_folder_and_moving_averages(tiny_checkpoint, crops, home):
    """A checkpoint folder runs by onnxruntime with TensorFlow's embeddings, with and without
    --use_moving_averages (two cache files, the averages' embeddings differ); the digest follows
    the model's bytes, the image size and use_moving_averages."""
    embeddings = {}
    for averages in (False, True):
        with runtimes.open_model(tiny_checkpoint, use_moving_averages=averages) as ref:
            expected = ref.embed(crops)
            assert ref.arithmetic == 'fp32'
        # bf16: the checkpoint frozen from its files, with the same choice of weights
        with runtimes.open_model(tiny_checkpoint, use_moving_averages=averages, precision='bf16') as reduced:
            assert reduced.arithmetic == 'bf16'
            assert np.abs(reduced.embed(crops) - expected).max() < 0.005, averages   # the averages move it by 0.2
        with runtimes.open_model(tiny_checkpoint, use_moving_averages=averages, backend='onnx') as runner:
            assert (runner.kind, runner.image_size, runner.embedding_size) == ('onnx', 160, 648)
            assert runner.arithmetic == 'onnxruntime'   # recognize keys its gallery cache by it
            got = np.concatenate([runner.embed(crops[:1]), runner.embed(crops[1:])])
        assert np.abs(got - expected).max() < 1e-5, averages
        embeddings[averages] = got
    assert np.abs(embeddings[True] - embeddings[False]).max() > 0.01
    assert len(_cached_files(home)) == 2
    keys = {onnx_cache.model_digest(tiny_checkpoint), onnx_cache.model_digest(tiny_checkpoint, 128),
            onnx_cache.model_digest(tiny_checkpoint, use_moving_averages=True),
            onnx_cache.model_digest(tiny_checkpoint, opset=16)}
    assert len(keys) == 4
    names = [name for name, _ in onnx_cache.model_files(tiny_checkpoint)]
    assert names == ['model-tiny.meta', 'model-tiny.ckpt-1.data-00000-of-00001', 'model-tiny.ckpt-1.index']


def test_validate_and_api_with_backend_onnx(tiny_pb, crops, data_dir, home, tmp_path):
    """validate_on_lfw.py --backend onnx prints TensorFlow's result lines on 8 LFW pairs; FaceNet(...,
    backend='onnx') gives the TensorFlow model's embeddings."""
    from facenet_tf import api, validate
    with open(os.path.join(data_dir, 'lfw_protocol', 'pairs.txt')) as f:
        lines = f.read().splitlines()[1:]
    pairs = str(tmp_path / 'pairs.txt')
    with open(pairs, 'w') as f:
        f.write('2\t2\n' + '\n'.join(lines[0:2] + lines[300:302] + lines[600:602] + lines[900:902]) + '\n')
    argv = [os.path.join(data_dir, LFW), tiny_pb, '--lfw_pairs', pairs, '--lfw_nrof_folds', '2',
            '--lfw_batch_size', '6']
    results = {}
    for backend in ('tf', 'onnx'):
        run = run_main(validate, argv + ['--backend', backend])
        assert run.code == 0, run
        results[backend] = [line for line in run.out.splitlines()
                            if re.match(r'(Accuracy|Validation rate|Area|Equal)', line)]
    assert len(results['tf']) == 4 and results['onnx'] == results['tf']
    uint8 = np.stack([np.clip(c * 40 + 128, 0, 255).astype(np.uint8) for c in crops[:3]])
    with api.FaceNet(tiny_pb) as reference, api.FaceNet(tiny_pb, backend='onnx') as model:
        assert model.sess.kind == 'onnx' and model.embedding_size == 648
        assert np.abs(model.embed(uint8) - reference.embed(uint8)).max() < 1e-5


def test_misuse_is_one_line(tiny_pb, tiny_checkpoint, photos, home, tmp_path, monkeypatch):
    """--backend onnx with a .tflite, with --precision bf16, moving averages of a .pb: one `error:`
    line each, exit code 2, no conversion in the cache; a damaged cached file and a missing
    onnxruntime: one line naming what to do."""
    from facenet_tf import export_embeddings, model_io
    lite = str(tmp_path / 'tiny.tflite')
    model_io.export_tflite(tiny_pb, lite)
    out = str(tmp_path / 'e.h5')
    run = run_main(export_embeddings, [lite, photos, out, '--backend', 'onnx'])
    assert_one_line_error(run, lite, 'is a TensorFlow Lite model', '--backend onnx takes a .pb', code=2)
    run = run_main(export_embeddings, [tiny_pb, photos, out, '--backend', 'onnx', '--precision', 'bf16'])
    assert_one_line_error(run, tiny_pb, '--precision bf16 runs in TensorFlow only (--backend tf)', code=2)
    run = run_main(export_embeddings, [tiny_pb, photos, out, '--backend', 'cuda'])
    assert_one_line_error(run, "argument --backend: invalid choice: 'cuda'", code=2)
    with pytest.raises(FaceNetError, match='is a frozen graph: it holds one set of weights'):
        runtimes.open_model(tiny_pb, backend='onnx', use_moving_averages=True)
    assert _cached_files(home) == [] and not os.path.exists(out)
    cached = onnx_cache.cached_onnx(tiny_pb)
    with open(cached, 'r+b') as f:
        f.truncate(100)
    run = run_main(export_embeddings, [tiny_pb, photos, out, '--backend', 'onnx'])
    assert_one_line_error(run, cached, 'is not an ONNX model', 'the ONNX conversion of %s: delete it' % tiny_pb,
                          code=2)
    monkeypatch.setitem(sys.modules, 'onnxruntime', None)
    with pytest.raises(FaceNetError, match=re.escape('needs tf2onnx, onnxruntime and onnx: pip install tf2onnx '
                                                     'onnxruntime onnx')):
        runtimes.open_model(tiny_checkpoint, backend='onnx')
    assert not os.path.exists(out)
