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
def frozen_model(ref_pb):
    return ref_pb


def _run(*argv):
    return subprocess.run([sys.executable, SCRIPT] + list(argv), capture_output=True, text=True, cwd=ROOT)


def _matrix(stdout):
    rows = [line for line in stdout.splitlines() if re.match(r'^\d+\s+\s\s\d\.\d{4}', line)]
    return np.array([[float(x) for x in row.split()[1:]] for row in rows])


def _run_in_process(capsys, *argv):
    from facenet_tf import compare
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
    from facenet_tf import compare
    compare.main(compare.parse_arguments([frozen_model, faces[0], blank, faces[1], broken, faces[2], faces[0]]))
    out, err = capsys.readouterr()
    notes = [line for line in err.splitlines() if line.endswith(': left out')]   # on stderr, in order
    assert len(notes) == 2 and notes[0] == "can't detect face in %s: left out" % blank
    assert notes[1].startswith('cannot read %s (' % broken)
    assert 'left out' not in out
    listed = re.findall(r'^(\d+): (.+)$', out, re.M)
    assert [p for _, p in listed] == [faces[0], faces[1], faces[2], faces[0]]
    assert 'Distance matrix' in out
    dist = _matrix(out)
    assert dist.shape == (4, 4)
    assert np.allclose(dist, dist.T, atol=1e-4)
    assert np.all(np.diag(dist) == 0.0) and dist[0, 3] == 0.0
    assert np.all(dist[0, 1:3] > 0.0) and np.all(dist <= 2.0)


def test_compare_fixed_standardization_changes_embeddings(frozen_model, data_dir, capsys):
    lfw = os.path.join(data_dir, 'lfw_deepfunneled')
    faces = [os.path.join(lfw, p, p + '_0001.jpg') for p in ('Colin_Powell', 'Serena_Williams')]
    a = _matrix(_run_in_process(capsys, frozen_model, *faces))
    b = _matrix(_run_in_process(capsys, frozen_model, *faces, '--use_fixed_image_standardization'))
    assert a.shape == b.shape == (2, 2) and abs(a[0, 1] - b[0, 1]) > 1e-4


def test_compare_needs_two_faces(frozen_model, tmp_path, data_dir):
    blank = str(tmp_path / 'blank.png')
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(blank)
    face = os.path.join(data_dir, 'misc_faces', 'facenet_pytorch', 'test_images', 'paul_rudd', '1.jpg')
    r = _run(frozen_model, face, blank)
    assert r.returncode != 0
    assert r.stderr.strip().splitlines() == ["can't detect face in %s: left out" % blank,
                                             'compare.py: error: need at least two images with a detectable '
                                             'face, got 1']
    assert r.stdout == ''




def _classic_report(paths, emb):
    """What the classic compare.py prints for these embeddings: its distance and print loops, as
    they were written there (one distance per pair of rows, printed with print(..., end=''))."""
    import io
    out = io.StringIO()
    nrof_images = len(paths)
    print('Images:', file=out)
    for i in range(nrof_images):
        print('%1d: %s' % (i, paths[i]), file=out)
    print('', file=out)
    print('Distance matrix', file=out)
    print('    ', end='', file=out)
    for i in range(nrof_images):
        print('    %1d     ' % i, end='', file=out)
    print('', file=out)
    for i in range(nrof_images):
        print('%1d  ' % i, end='', file=out)
        for j in range(nrof_images):
            dist = np.sqrt(np.sum(np.square(np.subtract(emb[i, :], emb[j, :]))))
            print('  %1.4f  ' % dist, end='', file=out)
        print('', file=out)
    return out.getvalue()


def test_distance_matrix_and_report_match_the_classic_compare(frozen_model, reference_dir, capsys):
    """The 8 reference crops through compare.py's own path (prewhiten, embed with the reference-weights
    model, distance_matrix, print_matrix) give the classic compare.py distances (from the classic
    embeddings seed1_numpy_prewhiten.npy) within 1e-5, printed in the classic layout."""
    from facenet_tf import compare
    from facenet_tf import images as image_lib
    folder = os.path.join(reference_dir, 'embeddings')
    with open(os.path.join(folder, 'seed1_files.txt')) as f:
        paths = [os.path.join(folder, 'crops', line.strip()) for line in f if line.strip()]
    faces = np.stack([image_lib.prewhiten(image_lib.read_rgb(p)) for p in paths])
    classic_inputs = np.load(os.path.join(folder, 'seed1.npz'))['input_numpy_prewhiten']
    np.testing.assert_allclose(faces, classic_inputs, rtol=0, atol=1e-5)
    classic_emb = np.load(os.path.join(folder, 'seed1_numpy_prewhiten.npy'))
    n = len(paths)
    classic_dist = np.array([[np.sqrt(np.sum(np.square(np.subtract(classic_emb[i, :], classic_emb[j, :]))))
                              for j in range(n)] for i in range(n)])
    assert n == 8 and classic_dist.max() > 0.1

    emb = compare.embed(frozen_model, faces, 'fp32')
    dist = compare.distance_matrix(emb)
    assert dist.shape == (8, 8)
    assert np.abs(dist - classic_dist).max() < 1e-5

    # the layout: compare.py prints the classic distances exactly as the classic loops did
    capsys.readouterr()
    compare.print_matrix(paths, classic_dist)
    assert capsys.readouterr().out == _classic_report(paths, classic_emb)
    # and its own distances: the same text, but for a last digit where a classic distance lies within
    # 1e-5 of a rounding boundary of the 4-decimal format
    compare.print_matrix(paths, dist)
    got = capsys.readouterr().out
    want = _classic_report(paths, classic_emb)
    number = r'\d\.\d{4}'
    assert re.sub(number, 'D', got) == re.sub(number, 'D', want)
    got_values = np.array([float(x) for x in re.findall(number, got)]).reshape(n, n)
    want_values = np.array([float(x) for x in re.findall(number, want)]).reshape(n, n)
    near_boundary = np.abs(classic_dist * 1e4 - np.floor(classic_dist * 1e4) - 0.5) < 0.1
    differs = got_values != want_values
    assert not np.any(differs & ~near_boundary)
    assert np.all(np.abs(got_values - want_values) <= 1.0001e-4)



def _test_image(data_dir, person):
    return os.path.join(data_dir, 'misc_faces', 'facenet_pytorch', 'test_images', person, '1.jpg')


def test_compare_detects_on_the_full_image_by_default(tiny_pb, data_dir, capsys, monkeypatch):
    """paul_rudd/1.jpg is 1638x2048: compare.py embeds crops of full-image detections, as the classic
    compare.py, and prints their distances; --max_detect_side 1000 (a reduced copy) gives other crops."""
    from facenet_tf import compare
    from facenet_tf.align import aligner
    from facenet_tf.align.detect_face import MTCNN
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

    def recording_embed(model, faces, *settings):
        fed.append(faces)
        return real_embed(model, faces, *settings)
    monkeypatch.setattr(compare, 'embed', recording_embed)
    default = _matrix(_run_in_process(capsys, tiny_pb, *paths))
    np.testing.assert_allclose(fed[0], np.stack(expected), atol=1e-5)
    want = compare.distance_matrix(real_embed(tiny_pb, np.stack(expected), 'fp32'))
    assert default.shape == (2, 2) and want[0, 1] > 0.01
    np.testing.assert_allclose(default, want, atol=1.5e-4)  # printed with 4 decimals
    reduced = _matrix(_run_in_process(capsys, tiny_pb, *paths, '--max_detect_side', '1000'))
    assert np.abs(fed[1][0] - fed[0][0]).max() > 0.1  # paul_rudd: another crop
    np.testing.assert_allclose(fed[1][1], fed[0][1], atol=1e-5)  # the 250x250 image: not reduced
    assert abs(reduced[0, 1] - default[0, 1]) > 1e-3


def test_compare_gpu_memory_flags(capsys):
    from facenet_tf import compare
    args = compare.parse_arguments(['m.pb', 'a.jpg', 'b.jpg', '--gpu_memory_fraction', '0.25', '--allow_growth'])
    assert (args.gpu_memory_fraction, args.allow_growth) == (0.25, True)
    with pytest.raises(SystemExit) as e:
        compare.parse_arguments(['m.pb', 'a.jpg', 'b.jpg', '--gpu_memory_fraction', '0'])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        ': error: argument --gpu_memory_fraction: must be above 0 and at most 1, got 0')


def test_compare_max_detect_side_must_not_be_negative(capsys):
    from facenet_tf import compare
    assert compare.parse_arguments(['m.pb', 'a.jpg', 'b.jpg', '--max_detect_side', '900']).max_detect_side == 900
    assert compare.parse_arguments(['m.pb', 'a.jpg', 'b.jpg']).max_detect_side == 0
    with pytest.raises(SystemExit) as e:
        compare.parse_arguments(['m.pb', 'a.jpg', 'b.jpg', '--max_detect_side', '-1'])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        ': error: argument --max_detect_side: must be 0 (off) or a positive number of pixels, got -1')


def test_compare_bf16_warns_once(tiny_pb, data_dir, capsys, monkeypatch):
    """compare.py's main with --precision bf16 on a CPU without native bf16 (flags given here, not
    read from this machine), run twice in one process (two sessions): one warning line on stderr in all.
    When bf16 is emulated is test_precision.py's matter."""
    if os.environ.get('TF_ENABLE_ONEDNN_OPTS') == '0':
        pytest.skip('oneDNN is off: bf16 warns that it has no effect instead')
    from facenet_tf import precision
    monkeypatch.setattr(precision, '_warned', False)  # as in a fresh process
    monkeypatch.setattr(precision, '_cpu_flags', lambda: {'sse4_2', 'avx2', 'fma'})
    monkeypatch.setattr(precision, '_onednn_enabled', lambda: True)
    from facenet_tf import compare
    lfw = os.path.join(data_dir, 'lfw_deepfunneled')
    faces = [os.path.join(lfw, 'Ai_Sugiyama', 'Ai_Sugiyama_000%d.jpg' % i) for i in (1, 2)]
    for _ in range(2):
        compare.main(compare.parse_arguments([tiny_pb, faces[0], faces[1], '--precision', 'bf16']))
    captured = capsys.readouterr()
    assert _matrix(captured.out).shape == (4, 2)  # two reports
    warnings = [line for line in captured.err.splitlines() if line.startswith('warning: ')]
    assert warnings == ['warning: bf16 is emulated on this CPU (no avx512_bf16/amx_bf16) and slower than fp32']
