"""generate_pairs.py: LFW-format pairs files for any dataset, read back by lfw.get_paths."""
import os
import subprocess
import sys

import numpy as np
import pytest

from facenet_tf import generate_pairs
import lfw
from facenet_tf.cli import run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _generate(data, out, *flags):
    return run(generate_pairs.main, generate_pairs.parse_arguments([data, out] + list(flags)),
               prog='generate_pairs.py')


def _check_file(path, data, nrof_folds, n):
    header = lfw.read_pairs_header(path)
    assert header == [nrof_folds, n]
    pairs = lfw.read_pairs(path)
    assert len(pairs) == 2 * nrof_folds * n
    people_per_fold = []
    for k in range(nrof_folds):
        block = pairs[2 * n * k:2 * n * (k + 1)]
        assert all(len(p) == 3 for p in block[:n]) and all(len(p) == 4 for p in block[n:])
        assert all(p[1] != p[2] for p in block[:n])
        assert all(p[0] != p[2] for p in block[n:])
        keys = [tuple(p) for p in block]
        assert len(set(keys)) == len(keys)
        people_per_fold.append({p[0] for p in block} | {p[2] for p in block[n:]})
    for a in range(nrof_folds):
        for b in range(a + 1, nrof_folds):
            assert not people_per_fold[a] & people_per_fold[b]
    paths, issame, skipped = lfw.get_paths_and_skipped(data, pairs)
    assert not skipped and len(issame) == len(pairs)
    assert all(os.path.isfile(p) for p in paths)
    return pairs, paths


def _orl_like(root, people=40, images=10):
    """A folder tree laid out as the ORL faces (s1..s40, 1.png..10.png); generate_pairs reads names
    only, so the files are empty."""
    for person in range(1, people + 1):
        folder = root / ('s%d' % person)
        folder.mkdir(parents=True)
        for i in range(1, images + 1):
            (folder / ('%d.png' % i)).write_bytes(b'')
    return str(root)


def test_positional_numbers_on_non_lfw_names(tmp_path, capsys):
    data = _orl_like(tmp_path / 'orl')
    out = str(tmp_path / 'orl_pairs.txt')
    assert _generate(data, out, '--nrof_folds', '5', '--nrof_pairs', '30', '--seed', '7') == 0
    assert 'Wrote 5 folds x (30 same + 30 different) pairs of 40 people' in capsys.readouterr().out
    pairs, paths = _check_file(out, data, 5, 30)
    first = pairs[0]
    files = sorted(os.listdir(os.path.join(data, first[0])))
    assert paths[0] == os.path.join(data, first[0], files[int(first[1]) - 1])
    again = str(tmp_path / 'again.txt')
    _generate(data, again, '--nrof_folds', '5', '--nrof_pairs', '30', '--seed', '7')
    with open(out) as f1, open(again) as f2:
        assert f1.read() == f2.read()


def test_lfw_style_numbers(tmp_path):
    names = ['Person_%s_%s' % (a, b) for a in 'ABCDEFGH' for b in 'VWXYZ']
    data = tmp_path / 'lfw'
    for name in names:
        (data / name).mkdir(parents=True)
        for number in (2, 3):       # files _0002 and _0003 only: the numbers come from the names
            (data / name / ('%s_%04d.jpg' % (name, number))).write_bytes(b'')
    (data / names[0] / 'notes.txt').write_text('not an image')
    out = str(tmp_path / 'pairs.txt')
    assert _generate(str(data), out, '--nrof_folds', '4', '--nrof_pairs', '5') == 0
    pairs, paths = _check_file(out, str(data), 4, 5)
    numbers = np.array([int(p[1]) for p in pairs])
    assert numbers.min() >= 2 and numbers.max() <= 3
    assert all(os.path.basename(p).startswith(os.path.basename(os.path.dirname(p)) + '_000') for p in paths)


def test_too_small_dataset_is_a_user_error(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'src', 'generate_pairs.py'),
                           _orl_like(tmp_path / 'orl'), str(tmp_path / 'p.txt')],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith('generate_pairs.py: error: fold 1 (4 people) has only 180 same-person')
    assert not os.path.exists(str(tmp_path / 'p.txt'))
    with pytest.raises(SystemExit):
        generate_pairs.parse_arguments([])
