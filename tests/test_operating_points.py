"""Verification at chosen false-accept rates (facenet_tf.operating_points) against a plain NumPy
computation on synthetic scores; the threshold file's strict reader; validate --far / --pairs,
facenet-calibrate and classifier --threshold_file on a synthetic embeddings file (no model runs)."""
import argparse
import json
import math
import re

import numpy as np
import pytest

from facenet_tf import api, calibrate, classifier, classify, cli, embeddings_file, evaluation
from facenet_tf import generate_pairs, operating_points as op, validate
from facenet_tf.cli import run
from facenet_tf.errors import FaceNetError
from facenet_tf.verification_sets import load_verification_set

FARS = [0.05, 1e-2, 1e-3, 1e-4]


def _plain_point(dist, issame, far, train=None):
    """Threshold and TAR by plain loops: the largest impostor distance t (or inf) whose share of
    impostors strictly below it is <= far, then the share of genuine pairs below t."""
    train = np.ones(dist.size, bool) if train is None else train
    imp = dist[train & ~issame]
    best = None
    for t in sorted(set(imp.tolist())) + [math.inf]:
        if np.mean(imp < t) <= far:
            best = t
    return best


def _plain_interval(imp, far):
    """The order-statistic 95% interval with binomial sums written out: l the largest count with
    P(B < l) < 2.5%, u the smallest with P(B <= u - 1) >= 97.5%."""
    n = imp.size
    cdf = np.cumsum([math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(far) +
                              (n - i) * math.log1p(-far)) for i in range(n + 1)])
    low = int(np.searchsorted(cdf, 0.025 - 1e-12))          # smallest x with cdf(x) >= 2.5%
    high = int(np.searchsorted(cdf, 0.975 - 1e-12)) + 1
    return (imp[low - 1] if low else 0.0, imp[high - 1] if high <= n else math.inf)


def _scores(seed=0, n_same=2000, n_diff=3000):
    rng = np.random.default_rng(seed)
    dist = np.r_[rng.normal(0.7, 0.2, n_same), rng.normal(1.35, 0.15, n_diff)]
    issame = np.r_[np.ones(n_same, bool), np.zeros(n_diff, bool)]
    order = rng.permutation(dist.size)
    return np.abs(dist[order]), issame[order]


def test_thresholds_and_rates_equal_a_plain_computation():
    dist, issame = _scores()
    points = op.operating_points(dist, issame, FARS, nrof_folds=10)
    folds = evaluation.kfold_test_sets(dist.size, 10)
    for far, p in zip(FARS, points):
        t = _plain_point(dist, issame, far)
        assert p.threshold == t
        assert p.tar == np.mean(dist[issame] < t)
        assert p.measured_far == np.mean(dist[~issame] < t) <= far
        assert (p.nrof_genuine, p.nrof_impostor) == (2000, 3000)
        for k, test in enumerate(folds):
            inside = np.zeros(dist.size, bool)
            inside[test] = True
            tk = _plain_point(dist, issame, far, ~inside)
            assert p.fold_thresholds[k] == tk
            assert p.fold_tar[k] == np.mean(dist[inside & issame] < tk)
            assert p.fold_far[k] == np.mean(dist[inside & ~issame] < tk)
        assert p.tar_mean == pytest.approx(np.mean(p.fold_tar)) and p.tar_std == pytest.approx(np.std(p.fold_tar))
        assert p.fold_threshold_range == (min(p.fold_thresholds), max(p.fold_thresholds))
        assert p.ci95 == _plain_interval(np.sort(dist[~issame]), far)
        assert p.ci95[0] <= t <= p.ci95[1]
    # 3000 impostors: 1e-3 allows 3 false accepts (meaningful), 1e-4 none (not meaningful)
    assert [p.false_accepts_allowed for p in points] == [150, 30, 3, 0]
    assert [p.meaningful for p in points] == [True, True, True, False]
    assert np.sum(dist[~issame] < points[2].threshold) == 3


def test_ties_and_edge_rates():
    """Tied impostor distances: the threshold never lets more than the allowed share in; 1/N exactly
    is meaningful; an all-accepting rate gives inf."""
    dist = np.array([0.1, 0.2, 0.5, 0.5, 0.5, 0.9, 1.0, 1.2])
    issame = np.array([1, 1, 0, 0, 0, 0, 0, 0], bool)
    p = op.operating_points(dist, issame, [1 / 6, 0.5, 0.1], folds=[np.arange(4), np.arange(4, 8)])
    assert p[0].threshold == 0.5 and p[0].measured_far == 0 and p[0].meaningful
    assert p[1].threshold == 0.9 and p[1].measured_far == 0.5
    assert not p[2].meaningful
    assert np.isnan(p[0].fold_tar[1])                 # the second fold has no genuine pair
    assert op.thresholds_at(np.array([1.0, 2.0]), [0.999999])[0] == 2.0
    assert op.allowed_false_accepts(0.001, 3000) == 3 and op.allowed_false_accepts(0.3, 10) == 3
    for bad in (0, 1, -0.1, True, 'x'):
        with pytest.raises(FaceNetError):
            op.operating_points(dist, issame, [bad])
    with pytest.raises(FaceNetError, match='both same-person and different-person'):
        op.operating_points(dist[2:], issame[2:], [0.1])
    assert cli.rate_list('1e-2,1e-3') == [0.01, 0.001]
    for bad in ('0.01,1', '0', 'x', ','):
        with pytest.raises(argparse.ArgumentTypeError):
            cli.rate_list(bad)
    assert [op.far_text(f) for f in (1e-3, 1e-4, 0.005, 0.05)] == ['1e-3', '1e-4', '0.005', '0.05']


def test_api_verification_rates_are_l2_operating_points():
    rng = np.random.default_rng(1)
    e1 = rng.normal(size=(600, 8))
    e2 = np.where(np.arange(600)[:, None] % 2 == 0, e1 + rng.normal(0, 0.3, (600, 8)), rng.normal(size=(600, 8)))
    issame = np.arange(600) % 2 == 0
    rates = api.verification_rates(e1, e2, issame, fars=[0.01])
    dist = np.linalg.norm(e1 - e2, axis=1)
    t = _plain_point(dist, issame, 0.01)
    assert rates[0]['threshold'] == t and rates[0]['tar'] == np.mean(dist[issame] < t)
    assert rates[0]['nrof_impostor'] == 300 and rates[0]['meaningful']
    with pytest.raises(FaceNetError):
        api.verification_rates(e1, e2[:10], issame)


def _record(**changes):
    dist, issame = _scores(2)
    point = op.operating_points(dist, issame, [1e-3])[0]
    record = op.threshold_record(point, 'squared_l2', 'model-x', 'my_faces', 10)
    record.update(changes)
    return record


def test_threshold_file_round_trip_and_scales(tmp_path):
    path = str(tmp_path / 'calib.json')
    record = _record()
    op.write_threshold_file(path, record)
    found = op.read_threshold_file(path)
    assert found.record == record
    assert op.l2_threshold(found) == math.sqrt(record['threshold'])   # squared L2 converted
    notes = []
    value = op.threshold_from_file(path, notes.append, 'unknown threshold')
    assert value == math.sqrt(record['threshold'])
    assert notes == ['unknown threshold %.4f from %s: FAR 1e-3 on 5000 pairs of my_faces (model model-x)'
                     % (value, path)]
    assert api.threshold_value(path)[0] == value and api.threshold_value(0.8) == (0.8, 'threshold 0.8 (L2 distance)')
    angle = str(tmp_path / 'angle.json')
    op.write_threshold_file(angle, _record(metric='angle', threshold=0.3, ci95=[0.29, 0.31],
                                           threshold_folds=[0.29, 0.31]))
    with pytest.raises(FaceNetError, match='angle.*facenet-calibrate'):
        op.threshold_from_file(angle, notes.append)
    few = str(tmp_path / 'few.json')
    op.write_threshold_file(few, _record(nrof_impostor=500))
    assert 'warning: 500 different-person pairs cannot measure a FAR below 1/500' in op.describe(
        op.read_threshold_file(few))


@pytest.mark.parametrize('content, message', [
    (b'{"a": 1', 'not a threshold file \\(JSON\\)'),
    (b'[' * 60000 + b']' * 1000, 'not a threshold file \\(JSON\\)'),        # deep nesting
    (b' ' * (op.MAX_FILE_BYTES + 1), 'more than 65536 bytes'),
    (b'\xff\xfe', 'not a threshold file \\(JSON\\)'),
    (b'[1, 2]', 'one JSON object'),
    ('NaN', 'not a threshold file \\(JSON\\)'),
    ({'threshold': float('inf')}, 'not a threshold file \\(JSON\\)'),
    ({'extra': 1}, "unknown 'extra'"),
    ({'far': 0}, 'far must lie between 0 and 1'),
    ({'far': True}, 'far must be a number'),
    ({'nrof_impostor': 1.5}, 'nrof_impostor must be a non-negative integer'),
    ({'nrof_impostor': 0}, 'at least one pair of each kind'),
    ({'threshold': -1}, 'threshold must be a number'),
    ({'metric': 'cosine'}, 'metric must be one of'),
    ({'source': 'a\x1b[2Jb'}, 'source must be text of at most'),
    ({'model': 'm' * 2000}, 'model must be text of at most'),
    ({'ci95': [0, 0.1]}, 'does not hold the threshold'),
    ({'ci95': 3}, 'ci95 must be a list of two numbers'),
    ({'threshold_folds': [2, 1]}, 'threshold_folds must be a number in'),
    ({'version': 2}, 'not a threshold file of this version'),
], ids=['truncated', 'deep', 'large', 'not-utf8', 'list', 'nan', 'inf', 'unknown-key', 'far-0', 'far-bool',
        'count-float', 'no-impostor', 'negative', 'metric', 'control-chars', 'long-text', 'ci', 'ci-type', 'folds',
        'version'])
def test_hostile_threshold_files_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / 'bad.json'
    if isinstance(content, dict):
        record = _record()
        record.update(content)
        content = json.dumps(record).encode()
    elif content == 'NaN':
        record = _record()
        content = json.dumps(record).replace('"threshold": %r' % record['threshold'], '"threshold": NaN').encode()
    path.write_bytes(content)
    with pytest.raises(FaceNetError, match=message) as e:
        op.read_threshold_file(str(path))
    assert str(e.value).startswith(str(path)) and '\n' not in str(e.value)


def test_facenet_takes_a_threshold_file(tmp_path, tiny_pb):
    path = str(tmp_path / 'calib.json')
    op.write_threshold_file(path, dict(_record(), metric='l2', threshold=0.93, ci95=[0.9, None]))
    with api.FaceNet(tiny_pb, threshold=path) as model:
        assert model.threshold == 0.93
        assert model.threshold_source == ('threshold 0.9300 from %s: FAR 1e-3 on 5000 pairs of my_faces '
                                          '(model model-x)' % path)
    with api.FaceNet(tiny_pb, threshold=1.1) as model:
        assert model.threshold == 1.1
    with pytest.raises(FaceNetError, match='not found'):
        api.FaceNet(tiny_pb, threshold=str(tmp_path / 'none.json'))


def test_missing_and_special_files(tmp_path):
    with pytest.raises(FaceNetError, match='not found.*facenet-calibrate'):
        op.read_threshold_file(str(tmp_path / 'none.json'))
    with pytest.raises(FaceNetError, match='not a regular file'):
        op.read_threshold_file(str(tmp_path))


# ---- the tools on a synthetic embeddings file ----

PEOPLE, PER_PERSON, DIM = 60, 5, 16


@pytest.fixture(scope='module')
def faces(tmp_path_factory):
    """(embeddings file, pairs file A, pairs file B, folder) of 60 synthetic people x 5 faces: a
    person is a random unit direction, a face that direction plus noise, normalised."""
    base = tmp_path_factory.mktemp('faces')
    rng = np.random.default_rng(7)
    names = ['P%02d' % k for k in range(PEOPLE)]
    centres = rng.normal(size=(PEOPLE, DIM))
    emb = np.repeat(centres, PER_PERSON, 0) + rng.normal(0, 0.6, (PEOPLE * PER_PERSON, DIM))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    paths = ['%s/%s_%04d.png' % (n, n, i) for n in names for i in range(1, PER_PERSON + 1)]
    attrs = dict(model='synthetic-model', image_size=160, use_fixed_image_standardization=False,
                 use_flipped_images=False, precision='fp32', batch_size=100, data_dir='faces', shard='')
    h5 = str(base / 'faces.h5')
    labels = np.repeat(np.arange(PEOPLE), PER_PERSON)
    embeddings_file.write(h5, embeddings_file.Embeddings(emb.astype(np.float32), labels, paths, names, attrs))
    people = {n: list(range(1, PER_PERSON + 1)) for n in names}
    files = []
    for seed in (1, 2):
        f = base / ('pairs%d.txt' % seed)
        f.write_text('\n'.join(generate_pairs.generate(people, 10, 30, seed)) + '\n')
        files.append(str(f))
    return h5, files[0], files[1], embeddings_file.read(h5)


def _validate(capsys, argv):
    code = run(validate.main, validate.parse_arguments([str(a) for a in argv]), 'validate_on_lfw.py')
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


def _pair_distances(h5, stored, pairs_file):
    """Squared L2 distances and issame of a pairs file's pairs, from the file's rows."""
    vset = load_verification_set(h5, pairs_file, listed=stored.paths)
    e = embeddings_file.rows_of(stored, vset.items).astype(np.float64)[vset.where]
    return np.sum(np.square(e[0::2] - e[1::2]), 1), vset.issame


def _table_rows(out):
    lines = out.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith('Verification at chosen false-accept rates'))
    return [l.split() for l in lines[start + 2:] if not l.startswith('meaningful no:')]


def test_validate_far_table_keeps_the_classic_lines(faces, capsys):
    h5, pairs_a, pairs_b, stored = faces
    classic = _validate(capsys, [h5, 'unused-model', '--lfw_pairs', pairs_a])
    out = _validate(capsys, [h5, 'unused-model', '--lfw_pairs', pairs_a, '--far', '1e-1,1e-2,1e-3'])
    assert out.startswith(classic)
    assert out.splitlines()[len(classic.splitlines())] == ('Verification at chosen false-accept rates '
                                                           '(thresholds: squared L2; accept when below):')
    rows = _table_rows(out)
    dist, issame = _pair_distances(h5, stored, pairs_a)
    assert len(rows) == 3 and issame.sum() == 300
    for row, far in zip(rows, (0.1, 0.01, 0.001)):
        t = _plain_point(dist, issame, far)
        assert row[:3] == ['pairs1.txt', op.far_text(far), '%.5f' % np.mean(dist[issame] < t)]
        assert row[4:6] == ['%.5f' % t, '%.5f' % math.sqrt(t)]
        assert row[-1] == ('yes' if far * 300 >= 1 else 'no')


def test_validate_several_sets_one_table(faces, capsys):
    h5, pairs_a, pairs_b, stored = faces
    out = _validate(capsys, [h5, 'unused-model', '--lfw_pairs', pairs_a, '--pairs', pairs_b])
    assert len(re.findall(r'^Accuracy: ', out, re.M)) == 2 and 'Set pairs2.txt (' in out
    assert out.count('Reading the embeddings of') == 1
    rows = _table_rows(out)
    assert [r[0] for r in rows] == ['pairs1.txt'] * 3 + ['pairs2.txt'] * 3
    dist, issame = _pair_distances(h5, stored, pairs_b)
    t = _plain_point(dist, issame, 1e-2)
    assert rows[3][1] == '1e-2' and rows[3][4] == '%.5f' % t
    code = run(validate.main, validate.parse_arguments([h5, 'm', '--lfw_pairs', pairs_a, '--pairs',
                                                        str(pairs_a) + '.missing']), 'validate_on_lfw.py')
    assert code == 2 and 'error:' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        validate.parse_arguments([h5, 'm', '--far', '2'])


def _calibrate(capsys, argv):
    code = run(calibrate.main, calibrate.parse_arguments([str(a) for a in argv]), 'calibrate_threshold.py')
    out = capsys.readouterr()
    return code, out.out, out.err


def test_calibrate_all_pairs_and_drawn_pairs(faces, tmp_path, capsys):
    h5, _, _, stored = faces
    out_json = tmp_path / 'calib.json'
    code, out, err = _calibrate(capsys, [h5, 'unused-model', out_json, '--far', '1e-3'])
    assert code == 0, err
    record = json.loads(out_json.read_text())
    emb = stored.embeddings.astype(np.float64)
    i, j = np.triu_indices(len(emb), 1)
    dist = np.sqrt(np.sum(np.square(emb[i] - emb[j]), 1))
    issame = stored.labels[i] == stored.labels[j]
    t = _plain_point(dist, issame, 1e-3)
    assert record['threshold'] == t and record['metric'] == 'l2' and record['far'] == 1e-3
    assert record['nrof_genuine'] == PEOPLE * 10 and record['nrof_impostor'] == len(dist) - PEOPLE * 10
    assert record['tar'] == np.mean(dist[issame] < t)
    assert record['model'] == 'synthetic-model' and record['source'] == 'faces.h5'
    assert record['ci95'] == list(_plain_interval(np.sort(dist[~issame]), 1e-3))
    assert record['ci95'][0] < t < record['ci95'][1]
    assert 'Calibrating on all pairs of 300 images of 60 people' in out
    assert 'for FAR 1e-3 written to %s' % out_json in out
    # the same run again refuses to replace the file; drawn pairs when the folder is large
    code, _, err = _calibrate(capsys, [h5, 'unused-model', out_json])
    assert code == 2 and 'exists already' in err
    code, out, err = _calibrate(capsys, [h5, 'unused-model', out_json, '--overwrite', '--max_all_pairs_images', 100,
                                         '--nrof_pairs', 20, '--far', '0.01'])
    assert code == 0, err
    record = json.loads(out_json.read_text())
    assert record['nrof_genuine'] == record['nrof_impostor'] == 200 and record['far'] == 0.01
    assert '10 folds x (20 same + 20 different) pairs drawn from 300 images' in out


def test_classifier_reads_the_threshold_file(faces, tmp_path, capsys):
    h5, _, _, stored = faces
    pkl, calib = str(tmp_path / 'c.pkl'), tmp_path / 'calib.json'
    assert run(classifier.main, classifier.parse_arguments(['TRAIN', h5, 'unused', pkl, '--use_split_dataset',
                                                            '--min_nrof_images_per_class', '5',
                                                            '--nrof_train_images_per_class', '3']), 'c') == 0
    op.write_threshold_file(str(calib), dict(_record(), threshold=0.49, ci95=[0.45, 0.55]))    # squared L2
    capsys.readouterr()
    common = ['CLASSIFY', h5, 'unused', pkl, '--use_split_dataset', '--min_nrof_images_per_class', '5',
              '--nrof_train_images_per_class', '3']
    assert run(classifier.main, classifier.parse_arguments(common + ['--threshold_file', str(calib)]), 'c') == 0
    by_file = capsys.readouterr()
    assert run(classifier.main, classifier.parse_arguments(common + ['--unknown_threshold', '0.7']), 'c') == 0
    by_value = capsys.readouterr()
    assert by_file.out == by_value.out and 'Unknown: ' in by_file.out
    assert 'unknown threshold 0.7000 from %s: FAR 1e-3 on 5000 pairs of my_faces (model model-x)' % calib in by_file.err
    with pytest.raises(SystemExit):
        classifier.parse_arguments(common + ['--threshold_file', str(calib), '--unknown_threshold', '1'])
    assert classify.UNKNOWN in by_file.out
