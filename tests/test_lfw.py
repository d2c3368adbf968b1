"""LFW evaluation math against the classic outputs, and reading the LFW protocol files."""
import importlib.util
import os

import numpy as np
import pytest
from scipy.interpolate import BSpline

import lfw
from facenet_tf import evaluation
from facenet_tf.errors import FaceNetError


@pytest.fixture(scope='module')
def classic(test_data_dir):
    """Classic lfw.evaluate outputs (4 variants) and the pair distances of its inputs (tests/data)."""
    with np.load(os.path.join(test_data_dir, 'classic_lfw_evaluate.npz')) as d:
        return {key: d[key] for key in d.files}


@pytest.fixture(scope='module')
def synth(reference_dir):
    """The classic inputs: synth_data.lfw_synth_pairs(6000, 512, 4321) of ../shared (49 MB, not carried)."""
    spec = importlib.util.spec_from_file_location('synth_data', os.path.join(reference_dir, 'synth_data.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.lfw_synth_pairs(6000, 512, 4321)


def _embeddings_with_distances(dist, metric):
    """Pairs (rows 2i, 2i+1) whose distance under `metric` is dist[i]: 1-D points sqrt(d) and 0 for
    the squared Euclidean distance, 2-D unit vectors at angle pi*d for the angular distance."""
    emb = np.zeros((2 * len(dist), 1 if metric == 0 else 2))
    if metric == 0:
        emb[0::2, 0] = np.sqrt(dist)
    else:
        emb[0::2, 0] = 1.0
        emb[1::2, 0], emb[1::2, 1] = np.cos(np.pi * dist), np.sin(np.pi * dist)
    return emb


def _check_against_classic(classic, key, embeddings, issame, metric, subtract_mean):
    tpr, fpr, accuracy, val, val_std, far = lfw.evaluate(embeddings, issame, 10, metric, bool(subtract_mean))
    np.testing.assert_allclose(tpr, classic[key + '_tpr'], rtol=0, atol=1e-9)
    np.testing.assert_allclose(fpr, classic[key + '_fpr'], rtol=0, atol=1e-9)
    np.testing.assert_allclose(accuracy, classic[key + '_accuracy'], rtol=0, atol=1e-9)
    assert abs(val - classic[key + '_val']) < 1e-9
    assert abs(val_std - classic[key + '_val_std']) < 1e-9
    assert abs(far - classic[key + '_far']) < 1e-9
    auc, eer = evaluation.auc_eer(fpr, tpr)
    assert abs(auc - classic[key + '_auc']) < 1e-9
    assert abs(eer - classic[key + '_eer']) < 1e-9


@pytest.mark.parametrize('metric', [0, 1])
@pytest.mark.parametrize('subtract_mean', [0, 1])
def test_evaluate_matches_classic(synth, classic, metric, subtract_mean):
    """On the classic inputs themselves (512-D embeddings)."""
    embeddings, issame = synth
    assert np.array_equal(issame, classic['issame'])
    _check_against_classic(classic, 'metric%d_subtractmean%d' % (metric, subtract_mean), embeddings, issame,
                           metric, subtract_mean)


@pytest.mark.parametrize('metric, subtract_mean', [(0, 0), (0, 1), (1, 0)])
def test_evaluate_matches_classic_from_pair_distances(classic, metric, subtract_mean):
    """The same classic outputs from embeddings rebuilt from the pair distances (no ../shared needed).
    Mean subtraction leaves squared Euclidean distances unchanged; it changes angles, so the angular
    variant with mean subtraction needs the real 512-D inputs (test above)."""
    embeddings = _embeddings_with_distances(classic['distance_metric%d' % metric], metric)
    np.testing.assert_allclose(evaluation.distance(embeddings[0::2], embeddings[1::2], metric),
                               classic['distance_metric%d' % metric], rtol=0, atol=1e-12)
    _check_against_classic(classic, 'metric%d_subtractmean%d' % (metric, subtract_mean), embeddings,
                           classic['issame'], metric, subtract_mean)


def _spline_threshold(far_train, thresholds, target):
    """What the classic linear-spline interpolation gives when duplicate FAR values are allowed."""
    knots = np.r_[far_train[0], far_train, far_train[-1]]
    return float(BSpline.construct_fast(knots, np.asarray(thresholds, float), 1)(target))


def test_threshold_at_far_handles_runs_of_equal_far_as_the_classic_spline():
    thresholds = np.arange(0, 4, 0.001)
    rng = np.random.RandomState(3)
    cases = 0
    for n_diff in (1000, 2000, 2700, 37):
        dist = np.sort(rng.uniform(0.2, 3.5, n_diff))
        far_train = np.searchsorted(dist, thresholds, side='left') / float(n_diff)
        for target in (1e-3, 1.0 / n_diff, 3.0 / n_diff, far_train[-1], 0.5):
            if target > far_train.max():
                continue
            got = evaluation.threshold_at_far(far_train, thresholds, target)
            assert abs(got - _spline_threshold(far_train, thresholds, target)) < 1e-12
            cases += 1
    assert cases >= 16
    assert evaluation.threshold_at_far(np.zeros(5), np.arange(5.0), 1e-3) == 0.0


def test_fold_without_different_pairs_is_a_user_error(classic):
    embeddings = _embeddings_with_distances(classic['distance_metric0'], 0)
    issame = np.array(classic['issame'])
    issame[:600] = True
    with pytest.raises(FaceNetError, match='fold 1 has no different-person pair in its test set'):
        lfw.evaluate(embeddings, issame)


def test_evaluate_rejects_odd_embedding_count(classic):
    embeddings, issame = _embeddings_with_distances(classic['distance_metric0'], 0), classic['issame']
    with pytest.raises(FaceNetError, match='two per pair'):
        lfw.evaluate(embeddings[:-1], issame)


@pytest.fixture(scope='module')
def protocol_dir(data_dir):
    return os.path.join(data_dir, 'lfw_protocol')


def test_read_pairs_view2(protocol_dir):
    path = os.path.join(protocol_dir, 'pairs.txt')
    pairs = lfw.read_pairs(path)
    assert len(pairs) == 6000
    assert list(pairs[0]) == ['Abel_Pacheco', '1', '4']
    assert len(pairs[300]) == 4
    assert lfw.read_pairs_header(path) == [10, 300]
    assert lfw.pair_folds(path, np.ones(6000, bool), 10) is None


def test_view1_folds_hold_equal_shares(protocol_dir):
    path = os.path.join(protocol_dir, 'pairsDevTest.txt')
    pairs = lfw.read_pairs(path)
    issame = np.array([len(p) == 3 for p in pairs])
    assert issame.sum() == 500 and len(pairs) == 1000
    folds = lfw.pair_folds(path, issame, 10)
    assert len(folds) == 10
    assert sorted(np.concatenate(folds).tolist()) == list(range(1000))
    for fold in folds:
        assert issame[fold].sum() == 50 and (~issame[fold]).sum() == 50
    assert folds[0][:3].tolist() == [0, 1, 2] and folds[0][-1] == 549
    again = lfw.pair_folds(path, issame, 10)
    assert all(np.array_equal(a, b) for a, b in zip(folds, again))


def test_get_paths_skips_missing_pairs(data_dir, protocol_dir):
    pairs = lfw.read_pairs(os.path.join(protocol_dir, 'pairsDevTest.txt'))
    paths, issame, skipped = lfw.get_paths_and_skipped(os.path.join(data_dir, 'lfw_original_150px_devtest'),
                                                      pairs)
    assert [list(p) for p in skipped] == [[p for p in pair] for pair in pairs if 'Betsy_Coffin' in pair]
    assert len(skipped) == 1
    assert len(paths) == 2 * len(issame) == 2 * 999
    assert paths[0].endswith(os.path.join('Abdullah_Gul', 'Abdullah_Gul_0013.jpg'))


def test_get_paths_prefers_jpg_then_png(tmp_path, capsys):
    person = tmp_path / 'Ann_Lee'
    person.mkdir()
    (person / 'Ann_Lee_0001.png').write_bytes(b'x')
    (person / 'Ann_Lee_0002.jpg').write_bytes(b'x')
    (person / 'Ann_Lee_0002.png').write_bytes(b'x')
    paths, issame = lfw.get_paths(str(tmp_path), [['Ann_Lee', '1', '2'], ['Ann_Lee', '1', '3']])
    assert paths == [str(person / 'Ann_Lee_0001.png'), str(person / 'Ann_Lee_0002.jpg')]
    assert issame == [True]
    assert 'Skipped 1 image pairs' in capsys.readouterr().err


def test_missing_pairs_file_names_the_protocol_files(tmp_path):
    with pytest.raises(FaceNetError, match='pairs.txt .*pairsDevTrain.txt'):
        lfw.read_pairs(str(tmp_path / 'nope.txt'))


def test_malformed_pairs_line(tmp_path):
    path = tmp_path / 'pairs.txt'
    path.write_text('1\t1\nAnn\t1\t2\nAnn\tx\n')
    with pytest.raises(FaceNetError, match='line 3'):
        lfw.read_pairs(str(path))


class _RunsCode(object):
    def __reduce__(self):
        return (os.system, ('echo unsafe',))


def test_bin_reader_refuses_code_and_checks_counts(tmp_path):
    import pickle
    from facenet_tf.verification_sets import read_bin, write_bin
    evil = tmp_path / 'evil.bin'
    evil.write_bytes(pickle.dumps(([b'a', b'b'], [_RunsCode()])))
    with pytest.raises(FaceNetError, match='refusing to load'):
        read_bin(str(evil))
    odd = tmp_path / 'odd.bin'
    write_bin(str(odd), [b'a', b'b', b'c'], [True])
    with pytest.raises(FaceNetError, match='3 images for 1 pairs'):
        read_bin(str(odd))
    good = tmp_path / 'good.bin'
    good.write_bytes(pickle.dumps(([bytearray(b'a'), b'b'], np.array([False])), protocol=2))
    images, issame = read_bin(str(good))
    assert images == [b'a', b'b'] and issame.tolist() == [False]


def test_area_under_curve_is_scikit_learns():
    """The AUC without scikit-learn's import: its numbers for increasing and decreasing x, its refusal
    of a curve that goes back and forth."""
    from sklearn import metrics
    rng = np.random.default_rng(0)
    x, y = np.sort(rng.random(40)), np.sort(rng.random(40))
    assert evaluation.area_under_curve(x, y) == metrics.auc(x, y)
    assert evaluation.area_under_curve(x[::-1], y[::-1]) == metrics.auc(x[::-1], y[::-1])
    with pytest.raises(ValueError):
        evaluation.area_under_curve([0.0, 0.5, 0.2], [0.0, 1.0, 1.0])
