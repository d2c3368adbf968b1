"""compare.py end to end: detection, alignment, embedding with a published-format model, the report."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, 'src', 'compare.py')


@pytest.fixture(scope='module')
def frozen_model(reference_dir, tmp_path_factory):
    from lfw_refmodel import write_frozen
    return write_frozen(reference_dir, str(tmp_path_factory.mktemp('cmp') / 'ref.pb'))


def _run(*argv):
    return subprocess.run([sys.executable, SCRIPT] + list(argv), capture_output=True, text=True, cwd=ROOT)


def _matrix(stdout):
    rows = [line for line in stdout.splitlines() if re.match(r'^\d+\s+\s\s\d\.\d{4}', line)]
    return np.array([[float(x) for x in row.split()[1:]] for row in rows])


def _run_in_process(capsys, *argv):
    import compare
    compare.main(compare.parse_arguments(list(argv)))
    return capsys.readouterr().out


def test_compare_report(frozen_model, data_dir, tmp_path, capsys):
    people = os.path.join(data_dir, 'misc_faces', 'facenet_pytorch', 'test_images')
    faces = [os.path.join(people, p, '1.jpg') for p in ('angelina_jolie', 'paul_rudd', 'kate_siegel')]
    blank = str(tmp_path / 'blank.png')
    Image.fromarray(np.full((120, 120, 3), 128, np.uint8)).save(blank)
    broken = str(tmp_path / 'broken.jpg')
    with open(broken, 'wb') as f:
        f.write(b'not a jpeg at all')
    out = _run_in_process(capsys, frozen_model, faces[0], blank, faces[1], broken, faces[2], faces[0])
    assert "can't detect face in %s" % blank in out
    assert 'cannot read %s' % broken in out
    listed = re.findall(r'^(\d+): (.+)$', out, re.M)
    assert [p for _, p in listed] == [faces[0], faces[1], faces[2], faces[0]]
    assert 'Distance matrix' in out
    dist = _matrix(out)
    assert dist.shape == (4, 4)
    assert np.allclose(dist, dist.T, atol=1e-4)
    assert np.all(np.diag(dist) == 0.0) and dist[0, 3] == 0.0
    assert np.all(dist[0, 1:3] > 0.0) and np.all(dist <= 2.0)


def test_compare_fixed_standardization_changes_embeddings(frozen_model, data_dir, capsys):
    people = os.path.join(data_dir, 'misc_faces', 'facenet_pytorch', 'test_images')
    faces = [os.path.join(people, p, '1.jpg') for p in ('angelina_jolie', 'paul_rudd')]
    a = _matrix(_run_in_process(capsys, frozen_model, *faces))
    b = _matrix(_run_in_process(capsys, frozen_model, *faces, '--use_fixed_image_standardization'))
    assert a.shape == b.shape == (2, 2) and abs(a[0, 1] - b[0, 1]) > 1e-4


def test_compare_needs_two_faces(frozen_model, tmp_path, data_dir):
    blank = str(tmp_path / 'blank.png')
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(blank)
    face = os.path.join(data_dir, 'misc_faces', 'facenet_pytorch', 'test_images', 'paul_rudd', '1.jpg')
    r = _run(frozen_model, face, blank)
    assert r.returncode != 0
    assert r.stderr.strip().splitlines() == ['compare.py: error: need at least two images with a detectable '
                                             'face, got 1']



@pytest.fixture(scope='module')
def tiny_model(tmp_path_factory):
    """A small frozen model (one fixed random convolution, pooled, L2-normalised; the classic tensor
    names) that loads and runs in a fraction of a second, for tests of what compare.py feeds it."""
    import tensorflow as tf
    tf1 = tf.compat.v1
    path = str(tmp_path_factory.mktemp('tiny') / 'tiny.pb')
    kernel = np.random.default_rng(0).normal(0.0, 0.1, (5, 5, 3, 8)).astype(np.float32)
    with tf1.Graph().as_default() as graph:
        images = tf1.placeholder(tf.float32, [None, 160, 160, 3], name='input')
        tf1.placeholder_with_default(False, [], name='phase_train')
        features = tf.nn.relu(tf.nn.conv2d(images, tf.constant(kernel), 4, 'VALID'))
        pooled = tf.reshape(tf.nn.avg_pool2d(features, 4, 4, 'VALID'), [-1, 9 * 9 * 8])
        tf.nn.l2_normalize(pooled, 1, 1e-10, name='embeddings')
        with open(path, 'wb') as f:
            f.write(graph.as_graph_def().SerializeToString())
    return path


def _test_image(data_dir, person):
    return os.path.join(data_dir, 'misc_faces', 'facenet_pytorch', 'test_images', person, '1.jpg')


def test_compare_detects_on_the_full_image_by_default(tiny_model, data_dir, capsys, monkeypatch):
    """paul_rudd/1.jpg is 1638x2048: compare.py embeds crops of full-image detections, as the classic
    compare.py, and prints their distances; --max_detect_side 1000 (a reduced copy) gives other crops."""
    import compare
    from align import aligner
    from align.detect_face import MTCNN
    from facenet_tf import images as image_lib
    paths = [_test_image(data_dir, 'paul_rudd'), os.path.join(data_dir, 'lfw_deepfunneled', 'Ai_Sugiyama',
                                                              'Ai_Sugiyama_0001.jpg')]
    with MTCNN() as detector:
        expected = []
        for path in paths:
            img = image_lib.read_rgb(path)
            boxes, _ = detector.detect(img)
            expected.append(image_lib.prewhiten(aligner.crop_face(img, boxes[0, 0:4], 160, 44)[0]))
    fed, real_embed = [], compare.embed

    def recording_embed(model, faces, precision):
        fed.append(faces)
        return real_embed(model, faces, precision)
    monkeypatch.setattr(compare, 'embed', recording_embed)
    default = _matrix(_run_in_process(capsys, tiny_model, *paths))
    np.testing.assert_allclose(fed[0], np.stack(expected), atol=1e-5)
    want = compare.distance_matrix(real_embed(tiny_model, np.stack(expected), 'fp32'))
    assert default.shape == (2, 2) and want[0, 1] > 0.01
    np.testing.assert_allclose(default, want, atol=1.5e-4)  # printed with 4 decimals
    reduced = _matrix(_run_in_process(capsys, tiny_model, *paths, '--max_detect_side', '1000'))
    assert np.abs(fed[1][0] - fed[0][0]).max() > 0.1  # paul_rudd: another crop
    np.testing.assert_allclose(fed[1][1], fed[0][1], atol=1e-5)  # the 250x250 image: not reduced
    assert abs(reduced[0, 1] - default[0, 1]) > 1e-3


def test_compare_max_detect_side_must_not_be_negative(capsys):
    import compare
    assert compare.parse_arguments(['m.pb', 'a.jpg', 'b.jpg', '--max_detect_side', '900']).max_detect_side == 900
    assert compare.parse_arguments(['m.pb', 'a.jpg', 'b.jpg']).max_detect_side == 0
    with pytest.raises(SystemExit) as e:
        compare.parse_arguments(['m.pb', 'a.jpg', 'b.jpg', '--max_detect_side', '-1'])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        ': error: argument --max_detect_side: must be 0 (off) or a positive number of pixels, got -1')


def _native_bf16_cpu():
    from facenet_tf.precision import NATIVE_BF16_FLAGS
    with open('/proc/cpuinfo') as f:
        text = f.read()
    return any(flag in text.split() for flag in NATIVE_BF16_FLAGS)


def test_compare_bf16_warns_once_on_a_cpu_without_native_bf16(tiny_model, data_dir, capsys, monkeypatch):
    """compare.py's main with --precision bf16 on this machine's real CPU flags, run twice in one
    process (two sessions): one warning line on stderr in all."""
    if not os.path.exists('/proc/cpuinfo'):
        pytest.skip('no /proc/cpuinfo to read the CPU flags from')
    if os.environ.get('TF_ENABLE_ONEDNN_OPTS') == '0':
        pytest.skip('oneDNN is off: bf16 warns that it has no effect instead')
    if _native_bf16_cpu():
        pytest.skip('this CPU computes bf16 natively (avx512_bf16/amx_bf16): no warning expected')
    from facenet_tf import precision
    monkeypatch.setattr(precision, '_warned', False)  # as in a fresh process
    import compare
    lfw = os.path.join(data_dir, 'lfw_deepfunneled')
    faces = [os.path.join(lfw, 'Ai_Sugiyama', 'Ai_Sugiyama_000%d.jpg' % i) for i in (1, 2)]
    for _ in range(2):
        compare.main(compare.parse_arguments([tiny_model, faces[0], faces[1], '--precision', 'bf16']))
    captured = capsys.readouterr()
    assert _matrix(captured.out).shape == (4, 2)  # two reports
    warnings = [line for line in captured.err.splitlines() if line.startswith('warning: ')]
    assert warnings == ['warning: bf16 is emulated on this CPU (no avx512_bf16/amx_bf16) and slower than fp32']
