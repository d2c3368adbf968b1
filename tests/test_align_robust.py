"""align_dataset_mtcnn beyond the classic tool: bad input, resume after a kill, workers, landmarks."""
import glob
import io
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from facenet_tf.align import align_dataset_mtcnn as script
from facenet_tf.align import aligner, alignment_plan, batch_alignment, landmarks
from facenet_tf.align.detect_face import MTCNN
from facenet_tf.cli import run
from facenet_tf.images import read_rgb

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, 'src', 'align', 'align_dataset_mtcnn.py')


def _run(argv, capsys):
    code = script.main(script.parse_arguments(argv))
    return code, capsys.readouterr()


def _bb_lines(output_dir):
    lines = []
    for path in glob.glob(os.path.join(output_dir, 'bounding_boxes_*.txt')):
        with open(path) as f:
            lines += [line.split() for line in f]
    return lines


@pytest.fixture(scope='module')
def face_path(data_dir):
    return os.path.join(data_dir, 'lfw_deepfunneled', 'Ai_Sugiyama', 'Ai_Sugiyama_0001.jpg')


def _exif_rotated(face):
    """The face stored rotated by 90 degrees with an EXIF tag that turns it upright again."""
    stored = face.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # display: rotate 90 degrees clockwise
    buf = io.BytesIO()
    stored.save(buf, format='JPEG', quality=95, exif=exif.tobytes())
    return buf.getvalue()


def test_bad_and_odd_inputs_never_stop_a_run(face_path, tmp_path, capsys):
    face = Image.open(face_path).convert('RGB')
    d = tmp_path / 'in' / 'odd'
    d.mkdir(parents=True)
    with open(face_path, 'rb') as f:
        jpeg = f.read()
    (d / 'not_an_image.jpg').write_text('hello, I am text\n')
    (d / 'truncated.jpg').write_bytes(jpeg[:len(jpeg) // 2])
    (d / 'empty.png').write_bytes(b'')
    face.convert('L').save(str(d / 'gray.png'))
    face.convert('RGBA').save(str(d / 'rgba.png'))
    face.convert('P').save(str(d / 'palette.png'))
    Image.fromarray(np.asarray(face.convert('L'), dtype=np.uint16) * 257).save(str(d / 'sixteen.png'))
    face.convert('CMYK').save(str(d / 'cmyk.jpg'))
    (d / 'exif_rotated.jpg').write_bytes(_exif_rotated(face))
    face.resize((8, 8)).save(str(d / 'tiny.png'))
    face.resize((4000, 4000), Image.BILINEAR).save(str(d / 'huge.jpg'), quality=90)
    Image.new('RGB', (300, 200), (90, 120, 200)).save(str(d / 'noface.png'))
    out = str(tmp_path / 'out')
    code, captured = _run([str(tmp_path / 'in'), out, '--image_size', '96', '--margin', '16',
                           '--max_detect_side', '2000'], capsys)
    assert code == 0
    assert ('Total number of images: 12, successfully aligned: 7 (7 faces written), no face: 2, '
            'unreadable: 3') in captured.out
    for name in ('not_an_image.jpg', 'truncated.jpg', 'empty.png'):
        assert sum(name in line and line.startswith('unreadable: ') for line in captured.err.splitlines()) == 1
    for name in ('tiny.png', 'noface.png'):
        assert sum(name in line and line.startswith('no face: ') for line in captured.err.splitlines()) == 1
    written = sorted(os.listdir(os.path.join(out, 'odd')))
    assert written == sorted(n + '.png' for n in ('gray', 'rgba', 'palette', 'sixteen', 'cmyk', 'exif_rotated',
                                                  'huge'))
    boxes = {os.path.basename(p[0]): [int(v) for v in p[1:]] for p in _bb_lines(out)}
    ref = np.array(boxes['gray.png'], dtype=np.float64)
    # the EXIF-rotated file is aligned upright: same box as the plain image
    np.testing.assert_allclose(boxes['exif_rotated.png'], ref, atol=3)
    # with --max_detect_side 2000 the huge image is detected on a reduced copy; its box maps back to
    # full resolution (16x)
    assert _iou(np.array(boxes['huge.png']) / 16.0, ref) > 0.75  # a blurry 16x upscale: not the same pixels
    assert boxes['noface.png'] == [] and boxes['tiny.png'] == []
    for name in written:
        assert Image.open(os.path.join(out, 'odd', name)).size == (96, 96)


def _iou(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return w * h / (area(a) + area(b) - w * h)


def test_nothing_readable_gives_exit_code_1(tmp_path, capsys):
    d = tmp_path / 'in' / 'junk'
    d.mkdir(parents=True)
    (d / 'a.jpg').write_text('not a jpeg')
    code, captured = _run([str(tmp_path / 'in'), str(tmp_path / 'out')], capsys)
    assert code == 1
    assert 'unreadable: 1' in captured.out


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    argv = [str(tmp_path / 'missing'), str(tmp_path / 'out')]
    code = run(script.main, script.parse_arguments(argv), prog='align_dataset_mtcnn.py')
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith('align_dataset_mtcnn.py: error: ') and 'input folder not found' in err
    assert len(err.strip().splitlines()) == 1
    for flag, value, message in [('--image_size', '0', 'must be at least 1'),
                                 ('--num_workers', '0', 'must be at least 1'),
                                 ('--margin', '-1', 'must be at least 0'),
                                 ('--gpu_memory_fraction', '1.5', 'must be above 0 and at most 1')]:
        with pytest.raises(SystemExit) as exit_info:  # flag values: argparse reports them
            script.parse_arguments([str(tmp_path), str(tmp_path / 'out'), flag, value])
        assert exit_info.value.code == 2
        assert 'error: argument %s: %s' % (flag, message) in capsys.readouterr().err


def _dead_pid():
    proc = subprocess.Popen([sys.executable, '-c', 'pass'])
    proc.wait()
    return proc.pid


def test_resume_after_kill_leaves_no_partial_png(data_dir, tmp_path, capsys):
    lfw = os.path.join(data_dir, 'lfw_deepfunneled')
    people = sorted(p for p in os.listdir(lfw) if len(os.listdir(os.path.join(lfw, p))) >= 4)[:16]
    src = tmp_path / 'in'
    total = 0
    for person in people:
        (src / person).mkdir(parents=True)
        for name in sorted(os.listdir(os.path.join(lfw, person)))[:4]:
            os.symlink(os.path.join(lfw, person, name), str(src / person / name))
            total += 1
    (src / people[0] / 'blank.png').parent.mkdir(exist_ok=True)
    Image.new('RGB', (100, 100), (0, 0, 0)).save(str(src / people[0] / 'blank.png'))
    total += 1
    out = tmp_path / 'out'
    proc = subprocess.Popen([sys.executable, SCRIPT, str(src), str(out), '--image_size', '80'],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if len(glob.glob(str(out / '*' / '*.png'))) >= 8:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = glob.glob(str(out / '*' / '*.png'))
    assert 0 < len(first) < total, 'the run should have been killed part-way'
    for path in first:  # every visible PNG is complete
        with Image.open(path) as im:
            im.load()
    stale = out / people[1] / ('.%s.png.%d.tmp' % ('x', _dead_pid()))
    stale.write_bytes(b'partial')
    listed = len(alignment_plan.previous_runs(str(out))[1])  # done: a crop (or no face) with its line
    code, captured = _run([str(src), str(out), '--image_size', '80'], capsys)
    assert code == 0
    if listed:
        assert '%d of %d images already aligned by an earlier run' % (listed, total) in captured.err
    final = glob.glob(str(out / '*' / '*.png'))
    assert len(final) == total - 1  # all but the blank image
    assert not stale.exists()
    assert not [n for n in glob.glob(str(out / '*' / '.*'))]
    code, captured = _run([str(src), str(out), '--image_size', '80'], capsys)
    assert '%d of %d images already aligned' % (total, total) in captured.err  # no-face image remembered


def test_workers_give_the_same_outputs(data_dir, tmp_path, capsys):
    lfw = os.path.join(data_dir, 'lfw_deepfunneled')
    src = tmp_path / 'in'
    for person in ('Ahmed_Chalabi', 'Ai_Sugiyama'):
        (src / person).mkdir(parents=True)
        for name in sorted(os.listdir(os.path.join(lfw, person)))[:3]:
            os.symlink(os.path.join(lfw, person, name), str(src / person / name))
    outs = {}
    for workers in (1, 2):
        out = str(tmp_path / ('out%d' % workers))
        code, _ = _run([str(src), out, '--image_size', '64', '--num_workers', str(workers)], capsys)
        assert code == 0
        outs[workers] = sorted((os.path.relpath(p[0], out), p[1:]) for p in _bb_lines(out))
    assert len(outs[1]) == 6
    assert outs[1] == outs[2]


def test_gpu_memory_flags_reach_the_detector_session(tmp_path):
    args = script.parse_arguments([str(tmp_path), str(tmp_path / 'out'), '--gpu_memory_fraction', '0.4',
                                   '--allow_growth'])
    opts = batch_alignment.Options(args.image_size, args.margin, False, False, 0, args.gpu_memory_fraction,
                                     args.allow_growth)
    batch_aligner = batch_alignment.BatchAligner(opts)
    try:
        gpu = batch_aligner.detector.session_config.gpu_options
        assert gpu.per_process_gpu_memory_fraction == pytest.approx(0.4) and gpu.allow_growth
    finally:
        batch_aligner.close()
    defaults = script.parse_arguments([str(tmp_path), str(tmp_path / 'out')])
    assert (defaults.gpu_memory_fraction, defaults.allow_growth) == (1.0, False)


def test_similarity_transform_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -4.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = scale * src @ rot.T + shift
    m = landmarks.similarity_transform(src, dst)
    np.testing.assert_allclose(m[:, :2], scale * rot, atol=1e-9)
    np.testing.assert_allclose(m[:, 2], shift, atol=1e-9)
    mirrored = dst * np.array([-1.0, 1.0])  # no reflection allowed: best fit is a proper rotation
    assert np.linalg.det(landmarks.similarity_transform(src, mirrored)[:, :2]) > 0


def test_landmark_alignment_puts_landmarks_on_the_template(data_dir, tmp_path, capsys):
    lfw = os.path.join(data_dir, 'lfw_deepfunneled')
    src = tmp_path / 'in' / 'p'
    src.mkdir(parents=True)
    for rel in ('Ahmed_Chalabi/Ahmed_Chalabi_0001.jpg', 'Ai_Sugiyama/Ai_Sugiyama_0002.jpg'):
        os.symlink(os.path.join(lfw, rel), str(src / os.path.basename(rel)))
    out = tmp_path / 'out'
    code, _ = _run([str(tmp_path / 'in'), str(out), '--image_size', '112', '--landmark_alignment'], capsys)
    assert code == 0
    with MTCNN() as det:
        for name in sorted(os.listdir(str(src))):
            original = read_rgb(str(src / name))
            boxes, points = det.detect(original)
            before = landmarks.face_points(points, aligner.choose_face(boxes, original.shape))
            m = landmarks.similarity_transform(before, landmarks.template(112))
            expected = before @ m[:, :2].T + m[:, 2]  # where the warp sends the landmarks
            assert np.abs(expected - landmarks.TEMPLATE_112).max() < 8.0
            img = np.asarray(Image.open(str(out / 'p' / (os.path.splitext(name)[0] + '.png'))))
            assert img.shape == (112, 112, 3)
            boxes, points = det.detect(img)
            found = landmarks.face_points(points, int(np.argmax(boxes[:, 4])))
            assert np.abs(found[:2] - expected[:2]).max() < 1.5  # eyes
            assert np.abs(found - expected).max() < 4.0
