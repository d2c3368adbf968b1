"""align_dataset_mtcnn: classic outputs on the 300 reference images, layout, names, face choice, crops."""
import glob
import os

import numpy as np
import pytest
from PIL import Image

from facenet_tf.align import aligner
from facenet_tf.align import align_dataset_mtcnn as script


def _run(argv, capsys=None):
    code = script.main(script.parse_arguments(argv))
    out = capsys.readouterr() if capsys is not None else None
    return code, out


def _bb_lines(output_dir):
    files = glob.glob(os.path.join(output_dir, 'bounding_boxes_*.txt'))
    assert len(files) == 1
    with open(files[0]) as f:
        return [line.rstrip('\n').split(' ') for line in f]


def _link(src, dst_dir, name=None):
    os.makedirs(dst_dir, exist_ok=True)
    os.symlink(src, os.path.join(dst_dir, name or os.path.basename(src)))


def test_300_reference_images_give_the_classic_boxes_and_crops(reference_dir, data_dir, tmp_path, capsys):
    mtcnn_dir = os.path.join(reference_dir, 'mtcnn')
    with open(os.path.join(mtcnn_dir, 'lfw_devtrain300_list.txt')) as f:
        rels = [line.strip() for line in f if line.strip()]
    for rel in rels:
        cls, name = rel.split('/')
        _link(os.path.join(data_dir, 'lfw_deepfunneled', rel), str(tmp_path / 'in' / cls), name)
    hopkins = os.path.join(mtcnn_dir, 'inputs', 'Anthony_Hopkins')  # the classic crops are of these
    for name in sorted(os.listdir(hopkins)):
        _link(os.path.join(hopkins, name), str(tmp_path / 'in' / 'Anthony_Hopkins'))
    out = str(tmp_path / 'out')
    code, captured = _run([str(tmp_path / 'in'), out, '--image_size', '160', '--margin', '32'], capsys)
    assert code == 0
    assert 'successfully aligned: 302' in captured.out
    assert 'align: 302/302' in captured.err  # progress line
    with open(os.path.join(mtcnn_dir, 'classic_bounding_boxes_lfw_devtrain300_160_32.txt')) as f:
        classic = {line.split()[0]: [int(v) for v in line.split()[1:]] for line in f if line.strip()}
    mine = {os.path.relpath(p[0], out): [int(v) for v in p[1:]] for p in _bb_lines(out)}
    assert len(classic) == 300
    assert {k: v for k, v in mine.items() if not k.startswith('Anthony_Hopkins')} == classic
    classic_crops = sorted(os.path.relpath(p, os.path.join(mtcnn_dir, 'aligned_single'))
                           for p in glob.glob(os.path.join(mtcnn_dir, 'aligned_single', '*', '*.png')))
    assert len(classic_crops) == 2
    diffs = []
    for rel in classic_crops:
        a = np.asarray(Image.open(os.path.join(out, rel)), dtype=np.float64)
        b = np.asarray(Image.open(os.path.join(mtcnn_dir, 'aligned_single', rel)).convert('RGB'),
                       dtype=np.float64)
        assert a.shape == b.shape == (160, 160, 3)
        diffs.append(np.abs(a - b).mean())
    assert max(diffs) < 1.0, max(diffs)
    assert os.path.isfile(os.path.join(out, 'revision_info.txt'))


@pytest.fixture(scope='module')
def small_dataset(data_dir, tmp_path_factory):
    """Two LFW people, a group photo and a blank image (no face) as three classes."""
    root = tmp_path_factory.mktemp('small') / 'in'
    lfw = os.path.join(data_dir, 'lfw_deepfunneled')
    for person in ('Ahmed_Chalabi', 'Ai_Sugiyama'):
        for name in sorted(os.listdir(os.path.join(lfw, person)))[:2]:
            _link(os.path.join(lfw, person, name), str(root / person))
    _link(os.path.join(data_dir, 'detection_photos', 'face_recognition', 'two_people.jpg'), str(root / 'group'))
    Image.new('RGB', (120, 90), (200, 180, 160)).save(str(root / 'group' / 'blank.png'))
    return str(root)


def test_layout_names_and_boxes_single_face(small_dataset, tmp_path, capsys):
    out = str(tmp_path / 'single')
    code, captured = _run([small_dataset, out, '--image_size', '64', '--margin', '10'], capsys)
    assert code == 0
    listing = sorted(os.listdir(out))
    assert [n for n in listing if not n.startswith('bounding_boxes_')] == [
        'Ahmed_Chalabi', 'Ai_Sugiyama', 'group', 'revision_info.txt']
    assert len(listing) == 5
    assert sorted(os.listdir(os.path.join(out, 'group'))) == ['two_people.png']
    assert sorted(os.listdir(os.path.join(out, 'Ai_Sugiyama'))) == ['Ai_Sugiyama_0001.png', 'Ai_Sugiyama_0002.png']
    lines = {os.path.relpath(p[0], out): p[1:] for p in _bb_lines(out)}
    assert lines[os.path.join('group', 'blank.png')] == []  # no face: listed by its path alone
    assert len(lines) == 6
    x1, y1, x2, y2 = map(int, lines[os.path.join('group', 'two_people.png')])
    assert 0 <= x1 < x2 <= 1126 and 0 <= y1 < y2 <= 661
    assert Image.open(os.path.join(out, 'group', 'two_people.png')).size == (64, 64)
    assert 'no face: ' in captured.err and 'blank.png' in captured.err   # a note, on stderr
    assert 'no face: 1' in captured.out
    with open(os.path.join(out, 'revision_info.txt')) as f:
        info = f.read()
    assert 'arguments: ' in info and 'tensorflow version: ' in info and 'git hash: ' in info


def test_layout_names_and_boxes_multiple_faces(small_dataset, tmp_path, capsys):
    out = str(tmp_path / 'multi')
    code, _ = _run([small_dataset, out, '--image_size', '64', '--detect_multiple_faces', 'True'], capsys)
    assert code == 0
    group = sorted(os.listdir(os.path.join(out, 'group')))
    assert len(group) >= 2 and group[:2] == ['two_people_0.png', 'two_people_1.png']
    assert 'Ahmed_Chalabi_0001_0.png' in os.listdir(os.path.join(out, 'Ahmed_Chalabi'))
    lines = _bb_lines(out)
    paths = [os.path.relpath(p[0], out) for p in lines]
    assert os.path.join('group', 'blank.png') in paths
    assert sum(p.startswith(os.path.join('group', 'two_people_')) for p in paths) == len(group)


def test_choose_face_prefers_large_and_central():
    shape = (200, 300, 3)
    boxes = np.array([[10, 10, 70, 70, 0.99],      # large but far from the centre
                      [125, 75, 175, 125, 0.9],    # smaller, centred
                      [140, 90, 150, 100, 0.99]])  # tiny, centred
    assert aligner.choose_face(boxes, shape) == 1
    assert aligner.choose_face(boxes[:1], shape) == 0
    size = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    assert size[0] > size[1]


def test_crop_face_grows_clips_and_resizes_like_pil():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (100, 120, 3), dtype=np.uint8)
    face, bb = aligner.crop_face(img, np.array([5.7, 20.2, 60.9, 99.5]), 40, 16)
    assert bb.tolist() == [0, 12, 68, 100]
    expected = np.asarray(Image.fromarray(img[12:100, 0:68]).resize((40, 40), Image.BILINEAR))
    np.testing.assert_array_equal(face, expected)
    face, bb = aligner.crop_face(img, np.array([130.0, 10, 150, 30]), 40, 0)
    assert face is None


def _iou(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return w * h / (area(a) + area(b) - w * h)


def test_detection_is_on_the_full_image_unless_max_detect_side(data_dir):
    """A 1638x2048 photo: by default the detector sees the full image (as the classic tools); with
    max_side 1000 it sees a reduced copy and the box, mapped back, moves a little (same face)."""
    from facenet_tf.align.detect_face import MTCNN
    from facenet_tf.images import read_rgb
    img = read_rgb(os.path.join(data_dir, 'misc_faces', 'facenet_pytorch', 'test_images', 'paul_rudd', '1.jpg'))
    assert img.shape[:2] == (2048, 1638)
    same, back = aligner.detection_copy(img)
    assert same is img and back is None
    with MTCNN() as detector:
        assert aligner.prepare(detector, img)[1] is None  # what align_dataset_mtcnn detects on
        full_boxes, full_points = detector.detect(img)
        boxes, points = aligner.detect_faces(detector, [img])[0]
        reduced_boxes, reduced_points = aligner.detect_faces(detector, [img], max_side=1000)[0]
    assert full_boxes.shape[0] == boxes.shape[0] == reduced_boxes.shape[0] == 1
    np.testing.assert_allclose(boxes, full_boxes, atol=1e-4)
    np.testing.assert_allclose(points, full_points, atol=1e-4)
    assert np.abs(reduced_boxes[0, :4] - full_boxes[0, :4]).max() > 1.0
    assert _iou(reduced_boxes[0], full_boxes[0]) > 0.8
    assert np.abs(reduced_points - full_points).max() < 40.0  # landmarks of the same face


def test_max_detect_side_flag(tmp_path, capsys):
    from facenet_tf.align.batch_alignment import Options
    args = script.parse_arguments([str(tmp_path), str(tmp_path / 'out')])
    assert args.max_detect_side == 0 and Options(160, 32, False, False).max_detect_side == 0
    assert script.parse_arguments([str(tmp_path), 'o', '--max_detect_side', '1500']).max_detect_side == 1500
    for bad, message in (('-5', 'must be 0 (off) or a positive number of pixels, got -5'),
                         ('big', "expected an integer, got 'big'")):
        with pytest.raises(SystemExit) as e:
            script.parse_arguments([str(tmp_path), 'o', '--max_detect_side', bad])
        assert e.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].endswith(': error: argument --max_detect_side: ' + message)
