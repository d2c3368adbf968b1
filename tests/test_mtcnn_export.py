"""MTCNN exported to ONNX and TFLite: the same cascade on onnxruntime / the TFLite interpreter gives the
TensorFlow detector's faces; the export tool, the cache, `--detector` in the aligner; hostile files."""
import glob
import os
import re
import shutil
import sys

import numpy as np
import pytest
from PIL import Image

from facenet_tf import cli
from facenet_tf.align import align_dataset_mtcnn as align_script
from facenet_tf.align import detect_face as df
from facenet_tf.align import mtcnn_export as me
from facenet_tf.align import mtcnn_runtimes as mr
from facenet_tf.errors import FaceNetError
from facenet_tf.images import read_rgb
from facenet_tf import export_mtcnn

pytest.importorskip('onnxruntime')
pytest.importorskip('tf2onnx')

# Tolerances against the TensorFlow detector (measured: boxes 2e-5 px, landmarks 7e-5 px, scores 0)
BOX_ATOL = 1e-3       # pixels
SCORE_ATOL = 1e-5
POINT_ATOL = 1e-3     # pixels


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    """A folder written by the export tool (both formats), run in-process."""
    out = str(tmp_path_factory.mktemp('mtcnn_export') / 'nets')
    assert cli.command(export_mtcnn.main, export_mtcnn.parse_arguments, [out]) == 0
    return out


@pytest.fixture(scope='module')
def tf_detector():
    with df.MTCNN() as det:
        yield det


@pytest.fixture(scope='module')
def reference_images(reference_dir):
    paths = sorted(glob.glob(os.path.join(reference_dir, 'mtcnn', 'inputs', '*', '*.*')))
    assert len(paths) >= 6
    return {os.path.basename(p): read_rgb(p) for p in paths}


def _assert_same_faces(found, expected, name):
    (boxes, points), (ref_boxes, ref_points) = found, expected
    assert boxes.shape == ref_boxes.shape and points.shape == ref_points.shape, name
    np.testing.assert_allclose(boxes[:, :4], ref_boxes[:, :4], atol=BOX_ATOL, err_msg=name)
    np.testing.assert_allclose(boxes[:, 4], ref_boxes[:, 4], atol=SCORE_ATOL, err_msg=name)
    np.testing.assert_allclose(points, ref_points, atol=POINT_ATOL, err_msg=name)


def test_export_tool_writes_six_files_and_refuses_to_overwrite(exported, capsys):
    sizes = {os.path.basename(p): os.path.getsize(p) for p in glob.glob(os.path.join(exported, '*'))}
    assert sorted(sizes) == sorted('%s.%s' % (n, f) for n in ('pnet', 'rnet', 'onet') for f in ('onnx', 'tflite'))
    assert 10000 < sizes['pnet.onnx'] < 100000 and 1000000 < sizes['onet.tflite'] < 3000000
    capsys.readouterr()
    assert cli.command(export_mtcnn.main, export_mtcnn.parse_arguments, [exported, '--format', 'onnx']) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'pnet.onnx: the output file exists already' in err[0]


@pytest.mark.parametrize('kind', ['onnx', 'tflite'])
def test_exported_detector_finds_the_tf_detectors_faces_on_the_reference_images(
        kind, exported, tf_detector, reference_images, reference_dir):
    with mr.ExportedMTCNN(kind, folder=exported) as det:
        for name, img in reference_images.items():
            found = det.detect(img)
            _assert_same_faces(found, tf_detector.detect(img), name)
            stem = os.path.splitext(name)[0]
            classic = os.path.join(reference_dir, 'mtcnn', stem + '_boxes.npy')
            if os.path.exists(classic):   # and the classic detector's recorded boxes
                ref_points = np.load(os.path.join(reference_dir, 'mtcnn', stem + '_points.npy')).reshape(10, -1)
                _assert_same_faces(found, (np.load(classic), ref_points), name + ' (classic)')
        faces = sum(det.detect(img)[0].shape[0] for img in reference_images.values())
        assert faces >= 7   # 1 + 1 + 0 + 3 faces + gray 1 + pair 2


def test_exported_detectors_batch_on_lfw_like_tf(exported, tf_detector, data_dir):
    paths = sorted(glob.glob(os.path.join(data_dir, 'lfw_deepfunneled', 'A*', '*.jpg')))[:12]
    images = [read_rgb(p) for p in paths]
    expected = tf_detector.detect_batch(images)
    for kind in ('onnx', 'tflite'):
        with mr.ExportedMTCNN(kind, folder=exported) as det:
            found = det.detect_batch(images)
        for path, f, e in zip(paths, found, expected):
            _assert_same_faces(f, e, '%s %s' % (kind, path))
    assert sum(e[0].shape[0] for e in expected) >= 12


def _lfw_input(data_dir, root):
    for person in ('Aaron_Peirsol', 'Abdullah_Gul'):
        os.makedirs(os.path.join(root, person))
        for src in sorted(glob.glob(os.path.join(data_dir, 'lfw_deepfunneled', person, '*.jpg')))[:3]:
            os.symlink(src, os.path.join(root, person, os.path.basename(src)))
    return root


def _crops(folder):
    return {os.path.relpath(p, folder): np.asarray(Image.open(p), dtype=np.int16)
            for p in sorted(glob.glob(os.path.join(folder, '*', '*.png')))}


def _lines(folder):
    (path,) = glob.glob(os.path.join(folder, 'bounding_boxes_*.txt'))
    with open(path) as f:
        return sorted(line.replace(folder, '') for line in f)


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv('FACENET_TF_HOME', str(tmp_path / 'cache'))
    return tmp_path / 'cache'


def test_aligner_with_onnx_detector_writes_the_tf_crops(data_dir, tmp_path, cache_home, capsys):
    """--detector onnx exports into the (empty) cache on first use and writes the same crops."""
    src = _lfw_input(data_dir, str(tmp_path / 'in'))
    outs = {}
    for kind in ('tf', 'onnx'):
        outs[kind] = str(tmp_path / kind)
        argv = [src, outs[kind], '--image_size', '160', '--margin', '32', '--detector', kind]
        assert cli.command(align_script.main, align_script.parse_arguments, argv) == 0
    err = capsys.readouterr().err
    assert 'exporting the MTCNN networks to %s' % cache_home in err
    assert sorted(os.listdir(glob.glob(str(cache_home / 'mtcnn' / '*'))[0])) == ['onet.onnx', 'pnet.onnx', 'rnet.onnx']
    tf_crops, onnx_crops = _crops(outs['tf']), _crops(outs['onnx'])
    assert len(tf_crops) == 6 and sorted(tf_crops) == sorted(onnx_crops)
    for name in tf_crops:   # boxes agree to 1e-3 px: the integer crop boxes and pixels are the same
        assert np.abs(tf_crops[name] - onnx_crops[name]).max() == 0, name
    assert _lines(outs['tf']) == _lines(outs['onnx'])


def _hostile_folder(exported, root, kind, net, data=None, make=None):
    folder = os.path.join(root, '%s_%s' % (kind, net))
    os.makedirs(folder)
    for n in ('pnet', 'rnet', 'onet'):
        shutil.copy(os.path.join(exported, '%s.%s' % (n, kind)), folder)
    path = os.path.join(folder, '%s.%s' % (net, kind))
    os.remove(path)
    if make is not None:
        make(path)
    else:
        with open(path, 'wb') as f:
            f.write(data)
    return folder


def _onnx_variant(exported, change):
    import onnx
    model = onnx.load(os.path.join(exported, 'pnet.onnx'))
    change(model)
    return model.SerializeToString()


def _external_data(model):
    import onnx
    init = model.graph.initializer[0]
    init.ClearField('raw_data')
    init.data_location = onnx.TensorProto.EXTERNAL
    entry = init.external_data.add()
    entry.key, entry.value = 'location', '../../../../etc/passwd'


def _foreign_op(model):
    import onnx
    model.graph.node.append(onnx.helper.make_node('Loop', ['a', 'b'], ['c']))


def _custom_domain(model):
    model.graph.node[1].domain = 'com.example'


def _wrong_input(model):
    model.graph.input[0].type.tensor_type.shape.dim[3].dim_value = 7


def test_hostile_exported_files_give_one_line_errors(exported, tmp_path):
    onnx_pnet = open(os.path.join(exported, 'pnet.onnx'), 'rb').read()
    tflite_onet = open(os.path.join(exported, 'onet.tflite'), 'rb').read()
    tflite_pnet = open(os.path.join(exported, 'pnet.tflite'), 'rb').read()
    cases = [
        ('onnx', 'pnet', onnx_pnet[:len(onnx_pnet) // 2], 'not a readable ONNX model'),
        ('onnx', 'rnet', b'\x00' * 100, 'not an ONNX model'),
        ('onnx', 'pnet', _onnx_variant(exported, _external_data), 'refers to external data'),
        ('onnx', 'pnet', _onnx_variant(exported, _foreign_op), 'operator Loop is not one'),
        ('onnx', 'pnet', _onnx_variant(exported, _custom_domain), 'is not one an MTCNN export uses'),
        ('onnx', 'pnet', _onnx_variant(exported, _wrong_input), 'the pnet network takes'),
        ('onnx', 'onet', onnx_pnet, '1 inputs and 2 outputs, the onet network has 1 and 3'),
        ('tflite', 'onet', b'\x1c\x00\x00\x00' + b'ABCD' + b'\x00' * 64, 'no TFL3 signature'),
        ('tflite', 'onet', tflite_onet[:4096], 'not a readable TensorFlow Lite model'),
        ('tflite', 'rnet', tflite_onet, '1 inputs and 3 outputs, the rnet network has 1 and 2'),
        ('tflite', 'rnet', tflite_pnet, 'input shape [?, ?, ?, 3], the rnet network takes [?, 24, 24, 3]'),
    ]
    for i, (kind, net, data, message) in enumerate(cases):
        folder = _hostile_folder(exported, str(tmp_path / str(i)), kind, net, data)
        with pytest.raises(FaceNetError) as info:
            mr.ExportedMTCNN(kind, folder=folder)
        text = str(info.value)
        assert message in text and '\n' not in text and '%s.%s' % (net, kind) in text, (i, text)

    def big(path):
        with open(path, 'wb') as f:
            f.truncate(mr.MAX_FILE_BYTES + 1)
    folder = _hostile_folder(exported, str(tmp_path / 'big'), 'onnx', 'onet', make=big)
    with pytest.raises(FaceNetError, match='more than an exported MTCNN network'):
        mr.ExportedMTCNN('onnx', folder=folder)
    folder = _hostile_folder(exported, str(tmp_path / 'fifo'), 'tflite', 'pnet', make=os.mkfifo)
    with pytest.raises(FaceNetError, match='not a regular file'):
        mr.ExportedMTCNN('tflite', folder=folder)


def test_hostile_file_in_the_cache_is_one_line_from_the_aligner(exported, data_dir, tmp_path, cache_home, capsys):
    folder = me.cache_folder(me.load_weights(None))
    os.makedirs(folder)
    for n in ('pnet', 'rnet', 'onet'):
        shutil.copy(os.path.join(exported, n + '.onnx'), folder)
    with open(os.path.join(folder, 'rnet.onnx'), 'wb') as f:
        f.write(_onnx_variant(exported, _external_data))
    src = _lfw_input(data_dir, str(tmp_path / 'in'))
    argv = [src, str(tmp_path / 'out'), '--detector', 'onnx']
    assert cli.command(align_script.main, align_script.parse_arguments, argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.match(r'^\S+: error: \S+/rnet\.onnx: refers to external data', err[0]), err
    assert not os.path.exists(str(tmp_path / 'out'))   # refused before anything was written


def test_missing_onnxruntime_is_one_line(monkeypatch, exported):
    monkeypatch.setitem(sys.modules, 'onnxruntime', None)   # `import onnxruntime` raises ImportError
    with pytest.raises(FaceNetError) as info:
        mr.ExportedMTCNN('onnx', folder=exported)
    assert str(info.value) == '--detector onnx needs the onnxruntime package: pip install onnxruntime'


def test_detector_flag_choices():
    assert align_script.parse_arguments(['a', 'b']).detector == 'tf'
    assert align_script.parse_arguments(['a', 'b', '--detector', 'tflite']).detector == 'tflite'
    with pytest.raises(SystemExit):
        align_script.parse_arguments(['a', 'b', '--detector', 'caffe'])
    from facenet_tf import recognize
    args = recognize.parse_arguments(['model.pb', 'photo.jpg', '--gallery', 'people', '--detector', 'onnx'])
    assert args.detector == 'onnx'


def test_api_mtcnn_with_the_tflite_detector(exported, cache_home, reference_images):
    """facenet_tf.MTCNN(detector='tflite') reads the cached export and gives TensorFlow's faces."""
    from facenet_tf import api
    folder = me.cache_folder(me.load_weights(None))
    os.makedirs(folder)
    for n in ('pnet', 'rnet', 'onet'):
        shutil.copy(os.path.join(exported, n + '.tflite'), folder)
    img = reference_images['hopkins_pair.png']
    boxes, scores, marks = api.MTCNN(detector='tflite', keep_all=True).detect(img)
    ref_boxes, ref_scores, ref_marks = api.MTCNN(keep_all=True).detect(img)
    assert boxes.shape == ref_boxes.shape == (2, 4)
    np.testing.assert_allclose(boxes, ref_boxes, atol=BOX_ATOL)
    np.testing.assert_allclose(scores, ref_scores, atol=SCORE_ATOL)
    np.testing.assert_allclose(marks, ref_marks, atol=POINT_ATOL)
    assert sorted(os.listdir(folder)) == ['onet.tflite', 'pnet.tflite', 'rnet.tflite']   # nothing re-exported


def test_tflite_keeps_an_interpreter_per_shape_within_its_pixel_budget(exported):
    """Recurring input shapes keep their interpreter (no re-planning between PNet levels); over the
    budget the least recently used one is resized; the outputs are the same either way. RNet/ONet
    crops run in power-of-two pieces, with the outputs of one call."""
    rng = np.random.default_rng(0)
    levels = [rng.standard_normal((2, s, s, 3)).astype(np.float32) for s in (40, 29, 20, 40)]
    path = os.path.join(exported, 'pnet.tflite')
    roomy = mr._TFLiteNet(path, 'pnet', 1, 1 << 20)
    outs = [roomy(x) for x in levels]
    assert list(roomy.by_shape) == [(2, 29, 29, 3), (2, 20, 20, 3), (2, 40, 40, 3)]
    tight = mr._TFLiteNet(path, 'pnet', 1, 2 * 40 * 40)
    for x, expected in zip(levels, outs):
        for got, want in zip(tight(x), expected):
            np.testing.assert_array_equal(got, want)
        assert list(tight.by_shape) == [x.shape]
    small = mr._TFLiteNet(path, 'pnet', 1, 3000)
    for side in (12, 13, 14, 15, 16, 50):   # five small interpreters, then one that needs the room of three
        small(np.zeros((1, side, side, 3), np.float32))
        assert sum(p for _, p in small.by_shape.values()) <= 3000
    assert list(small.by_shape) == [(1, 15, 15, 3), (1, 16, 16, 3), (1, 50, 50, 3)]
    assert mr._pieces(200, 64) == [64, 64, 64, 8] and mr._pieces(7, 64) == [4, 2, 1] and mr._pieces(64, 64) == [64]
    rnet = mr._TFLiteNet(os.path.join(exported, 'rnet.tflite'), 'rnet', 1, 1 << 20)
    crops = rng.standard_normal((77, 24, 24, 3)).astype(np.float32)
    pieces = rnet(crops)
    assert sorted(shape[0] for shape in rnet.by_shape) == [1, 4, 8, 64]
    for got, want in zip(pieces, rnet._run(crops)):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_tflite_detector_shared_by_two_threads_gives_the_sequential_faces(exported, data_dir):
    """The aligner detects two batches at once with one detector: TFLite calls are serialised."""
    from concurrent.futures import ThreadPoolExecutor
    paths = sorted(glob.glob(os.path.join(data_dir, 'lfw_deepfunneled', 'B*', '*.jpg')))[:16]
    images = [read_rgb(p) for p in paths]
    with mr.ExportedMTCNN('tflite', folder=exported) as det:
        expected = det.detect_batch(images[:8]) + det.detect_batch(images[8:])
        with ThreadPoolExecutor(2) as pool:
            halves = list(pool.map(det.detect_batch, [images[:8], images[8:]] * 2))
    for found in (halves[0] + halves[1], halves[2] + halves[3]):
        for path, f, e in zip(paths, found, expected):
            np.testing.assert_array_equal(f[0], e[0], err_msg=path)
            np.testing.assert_array_equal(f[1], e[1], err_msg=path)
