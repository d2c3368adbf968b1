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
