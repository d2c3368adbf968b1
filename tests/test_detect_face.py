"""MTCNN detector: networks, cascade and weights against the classic detector's recorded outputs."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from facenet_tf.align import detect_face as df
from facenet_tf.align import mtcnn_boxes as mb
from facenet_tf.align import mtcnn_weights as mw
from facenet_tf.errors import FaceNetError
from facenet_tf.images import read_rgb

THRESHOLD = [0.6, 0.7, 0.7]
REF_IMAGES = {'Anthony_Hopkins_0001': 'Anthony_Hopkins/Anthony_Hopkins_0001.jpg',
              'Anthony_Hopkins_0002': 'Anthony_Hopkins/Anthony_Hopkins_0002.jpg',
              'pilatus800': 'pilatus/pilatus800.jpg'}


@pytest.fixture(scope='module')
def mtcnn_dir(reference_dir):
    return os.path.join(reference_dir, 'mtcnn')


@pytest.fixture(scope='module')
def nets():
    sess = tf.compat.v1.Session(graph=tf.Graph(), config=df.session_config())
    yield df.create_mtcnn(sess, None)
    sess.close()


@pytest.fixture(scope='module')
def detector():
    with df.MTCNN() as det:
        yield det


def _recording(fn, calls):
    def wrapped(x):
        out = fn(x)
        calls.append((x, out))
        return out
    return wrapped


def test_every_network_call_matches_the_classic_trace(nets, mtcnn_dir):
    """Same inputs fed (pyramid levels, 24/48 crops) and same outputs, call by call."""
    for stem in ('Anthony_Hopkins_0001', 'Anthony_Hopkins_0002'):
        trace = np.load(os.path.join(mtcnn_dir, stem + '_trace.npz'))
        calls = []
        pnet, rnet, onet = (_recording(f, calls) for f in nets)
        img = read_rgb(os.path.join(mtcnn_dir, 'inputs', REF_IMAGES[stem]))
        df.detect_face(img, 20, pnet, rnet, onet, THRESHOLD, 0.709)
        fed = sorted(k for k in trace.files if k.endswith('_in'))
        assert len(calls) == len(fed)
        for key, (x, outs) in zip(fed, calls):
            ref_in = trace[key]
            assert x.shape == ref_in.shape, key
            np.testing.assert_array_equal(x, ref_in, err_msg=key)
            for i, out in enumerate(outs):
                np.testing.assert_allclose(out, trace['%s_out%d' % (key[:-3], i)], atol=2e-5, err_msg=key)


def test_detect_face_matches_classic_boxes_and_points(nets, mtcnn_dir):
    for stem, rel in REF_IMAGES.items():
        img = read_rgb(os.path.join(mtcnn_dir, 'inputs', rel))
        boxes, points = df.detect_face(img, 20, *nets, THRESHOLD, 0.709)
        ref_boxes = np.load(os.path.join(mtcnn_dir, stem + '_boxes.npy'))
        ref_points = np.load(os.path.join(mtcnn_dir, stem + '_points.npy')).reshape(10, -1)
        assert boxes.shape == ref_boxes.shape and points.shape == ref_points.shape, stem
        np.testing.assert_allclose(boxes[:, :4], ref_boxes[:, :4], atol=1e-3)
        np.testing.assert_allclose(boxes[:, 4], ref_boxes[:, 4], atol=1e-5)
        np.testing.assert_allclose(points, ref_points, atol=1e-3)
        if stem == 'pilatus800':   # the classic detector finds nothing: neither does this one
            assert boxes.shape == (0, 5) and points.shape == (10, 0)
        else:
            assert boxes.shape[0] >= 1


def _classic_lfw(mtcnn_dir):
    with open(os.path.join(mtcnn_dir, 'classic_detect_lfw_devtrain300.json')) as f:
        return json.load(f)


def test_batched_detection_matches_classic_on_300_lfw_images(detector, mtcnn_dir, data_dir):
    ref = _classic_lfw(mtcnn_dir)
    names = list(ref['images'])
    assert len(names) == 300
    images = [read_rgb(os.path.join(data_dir, 'lfw_deepfunneled', n)) for n in names]
    found = []
    for i in range(0, len(images), 50):
        found += detector.detect_batch(images[i:i + 50])
    faces = 0
    for name, (boxes, points) in zip(names, found):
        entry = ref['images'][name]
        ref_boxes = np.asarray(entry['boxes'], dtype=np.float64).reshape(-1, 5)
        ref_points = np.asarray(entry['points'], dtype=np.float64).reshape(-1, 10).T
        assert boxes.shape[0] == ref_boxes.shape[0], name
        faces += boxes.shape[0]
        np.testing.assert_allclose(boxes[:, :4], ref_boxes[:, :4], atol=0.5, err_msg=name)
        np.testing.assert_allclose(boxes[:, 4], ref_boxes[:, 4], atol=1e-3, err_msg=name)
        np.testing.assert_allclose(points, ref_points, atol=0.5, err_msg=name)
    assert faces >= 300


def test_detect_batch_equals_detect_on_mixed_sizes(detector, mtcnn_dir, data_dir):
    images = [read_rgb(os.path.join(mtcnn_dir, 'inputs', rel)) for rel in REF_IMAGES.values()]
    images.append(read_rgb(os.path.join(data_dir, 'detection_photos', 'face_recognition', 'two_people.jpg')))
    images.append(images[0][:, ::-1].copy())
    batch = detector.detect_batch(images)
    for img, (boxes, points) in zip(images, batch):
        one_boxes, one_points = detector.detect(img)
        assert boxes.shape == one_boxes.shape
        np.testing.assert_allclose(boxes, one_boxes, atol=1e-3)
        np.testing.assert_allclose(points, one_points, atol=1e-3)
    assert batch[3][0].shape[0] >= 2  # two_people.jpg


def test_bulk_detect_face_classic_api(nets, mtcnn_dir):
    images = [read_rgb(os.path.join(mtcnn_dir, 'inputs', rel)) for rel in REF_IMAGES.values()]
    results = df.bulk_detect_face(images, 20.0 / 250, *nets, THRESHOLD, 0.709)
    assert len(results) == 3
    assert results[2] is None
    ref_boxes = np.load(os.path.join(mtcnn_dir, 'Anthony_Hopkins_0001_boxes.npy'))
    np.testing.assert_allclose(results[0][0], ref_boxes, atol=1e-3)


def test_classic_npy_weights_give_identical_detections(detector, mtcnn_dir, tmp_path):
    packaged = mw.load_packaged()
    mw.save_classic(packaged, str(tmp_path))
    det1 = np.load(str(tmp_path / 'det1.npy'), allow_pickle=True).item()
    assert det1['conv1']['weights'].shape == (3, 3, 3, 10)
    assert det1['PReLU1']['alpha'].shape == (10,)
    assert set(det1) == {'conv1', 'PReLU1', 'conv2', 'PReLU2', 'conv3', 'PReLU3', 'conv4-1', 'conv4-2'}
    img = read_rgb(os.path.join(mtcnn_dir, 'inputs', REF_IMAGES['Anthony_Hopkins_0002']))
    with df.MTCNN(model_path=str(tmp_path)) as from_npy:
        boxes, points = from_npy.detect(img)
    ref_boxes, ref_points = detector.detect(img)
    np.testing.assert_array_equal(boxes, ref_boxes)
    np.testing.assert_array_equal(points, ref_points)


def test_weight_errors_are_user_errors(tmp_path):
    with pytest.raises(FaceNetError, match='not found'):
        mw.load_weights(str(tmp_path / 'missing'))
    with pytest.raises(FaceNetError, match='det1.npy'):
        mw.load_weights(str(tmp_path))


def test_nms_union_and_min():
    boxes = np.array([[0, 0, 9, 9, 0.9],      # kept
                      [1, 1, 10, 10, 0.8],    # IoU 81/119 = 0.68 with the first
                      [0, 0, 4, 4, 0.7],      # inside the first: IoU 0.25, Min overlap 1.0
                      [50, 50, 60, 60, 0.6]], dtype=np.float64)
    assert mb.nms(boxes, 0.5, 'Union').tolist() == [0, 2, 3]
    assert mb.nms(boxes, 0.7, 'Union').tolist() == [0, 1, 2, 3]
    assert mb.nms(boxes, 0.7, 'Min').tolist() == [0, 3]
    assert mb.nms(np.empty((0, 5)), 0.5, 'Union').size == 0


def test_no_face_and_tiny_images(detector):
    boxes, points = detector.detect(np.full((200, 300, 3), 128, dtype=np.uint8))
    assert boxes.shape == (0, 5) and points.shape == (10, 0)
    for shape in [(1, 1, 3), (11, 40, 3), (5, 500, 3)]:
        boxes, _ = detector.detect(np.zeros(shape, dtype=np.uint8))
        assert boxes.shape == (0, 5)


def test_crops_written_in_place_and_network_input_is_the_classic_scaling(mtcnn_dir):
    """crop_boxes(out=) fills the given rows only; network_input gives the classic scaling of the
    crops width-first, bit for bit, as one contiguous float32 array; stack_normalized the same of uint8."""
    img = read_rgb(os.path.join(mtcnn_dir, 'inputs', REF_IMAGES['Anthony_Hopkins_0001']))
    boxes = np.array([[10, 20, 60, 70], [-5, -8, 30, 25], [200, 210, 270, 280], [100, 100, 100, 100]], np.int32)
    fresh = mb.crop_boxes(img, boxes, 24)
    out = np.full((6, 24, 24, 3), np.nan)
    filled = mb.crop_boxes(img, boxes, 24, out=out[1:5])
    assert np.shares_memory(filled, out) and np.isnan(out[[0, 5]]).all()
    np.testing.assert_array_equal(out[1:5], fresh)
    assert fresh[1, 0, 0].tolist() == [0, 0, 0]    # zero padding above and left of the image
    expected = ((fresh - 127.5) * 0.0078125).astype(np.float32).transpose(0, 2, 1, 3)
    x = mb.network_input(fresh.copy())
    assert x.dtype == np.float32 and x.flags['C_CONTIGUOUS'] and x.shape == (4, 24, 24, 3)
    np.testing.assert_array_equal(x, expected)
    levels = [img[:30, :40], img[5:35, 10:50]]
    stacked = mb.stack_normalized(levels)
    np.testing.assert_array_equal(stacked, ((np.stack(levels) - 127.5) * 0.0078125).astype(np.float32))


def test_pyramid_levels_are_worked_out_once_per_image_size():
    levels = mb.pyramid_levels(250, 250, 20, 0.709)
    assert [s for s, _ in levels] == mb.pyramid_scales(250, 250, 20, 0.709)
    assert [size for _, size in levels][:3] == [(150, 150), (107, 107), (76, 76)]
    assert mb.pyramid_levels(250, 250, 20, 0.709) is levels
    assert [lv.shape for lv in df.Pyramid(np.zeros((250, 250, 3), np.uint8)).levels][0] == (150, 150, 3)
