"""Triplet sampling and selection against the classic reference outputs, schedule files, triplet loss."""
import os
import time

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from facenet_tf import training
from facenet_tf.training import triplets
from facenet_tf.errors import FaceNetError
from facenet_tf.dataset import ImageClass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEDULES = os.path.join(ROOT, 'data', 'learning_rate_schedules')


def _reference(test_data_dir, name):
    """Inputs and classic output of select_triplets (tests/data copy of ../shared/reference/train_eval)."""
    d = np.load(os.path.join(test_data_dir, 'classic_select_triplets_%s_45x40.npz' % name))
    ref = {key: d[key] for key in ('triplets', 'num_trips', 'nrof_triplets')}
    return d['embeddings'].astype(np.float64), d['num_per_class'].astype(np.int64), float(d['alpha']), ref


def _pairs_in_class_order(counts):
    """Every (anchor, positive) with anchor < positive inside a class, written out independently of
    triplets.anchor_positive_pairs."""
    pairs, start = [], 0
    for k in counts:
        pairs += [(start + i, start + j) for i in range(k) for j in range(i + 1, k)]
        start += k
    pairs = np.array(pairs, np.int64).reshape(-1, 2)
    return pairs[:, 0], pairs[:, 1]


def _brute_force(emb, counts, alpha):
    """Squared distances, labels, pairs and the valid-negative masks of every rule (plain numpy)."""
    dist = cdist(emb, emb, 'sqeuclidean')
    labels = np.repeat(np.arange(len(counts)), counts)
    a, p = _pairs_in_class_order(counts)
    pos = dist[a, p][:, None]
    other = labels[a][:, None] != labels[None, :]
    vgg = other & (dist[a] - pos < alpha)
    semi = vgg & (dist[a] > pos)
    return dist, labels, a, p, vgg, semi


def _check_rule(tr, dist, labels, alpha, semihard=False):
    a, p, n = tr.T
    assert np.all(labels[a] == labels[p]) and np.all(a < p)
    assert np.all(labels[a] != labels[n])
    assert np.all(dist[a, n] - dist[a, p] < alpha)
    if semihard:
        assert np.all(dist[a, n] > dist[a, p])
    assert len(np.unique(tr[:, :2], axis=0)) == len(tr)


@pytest.mark.parametrize('name', ['random', 'clustered'])
def test_select_triplets_matches_classic_reference(test_data_dir, name):
    emb, counts, alpha, ref = _reference(test_data_dir, name)
    paths = ['img%04d.png' % i for i in range(len(emb))]
    np.random.seed(0)
    trips, num_trips, nrof_triplets = triplets.select_triplets(emb, counts, paths, len(counts), alpha)
    assert num_trips == int(ref['num_trips']) and nrof_triplets == int(ref['nrof_triplets'])
    assert len(trips) == nrof_triplets and all(len(t) == 3 for t in trips)
    idx = np.array([[int(x[3:7]) for x in t] for t in trips])
    dist, labels, a, p, vgg, semi = _brute_force(emb, counts, alpha)
    _check_rule(idx, dist, labels, alpha)
    ref_pairs = {tuple(x) for x in ref['triplets'][:, :2].tolist()}
    assert {tuple(x) for x in idx[:, :2].tolist()} == ref_pairs
    # the classic negatives obey the rule checked above, and the pairs with a negative are exactly
    # those the brute force finds one for
    _check_rule(ref['triplets'].astype(np.int64), dist, labels, alpha)
    assert ref_pairs == {(x, y) for x, y, ok in zip(a.tolist(), p.tolist(), vgg.any(axis=1)) if ok}
    # the classic code shuffles its result: so does this one
    assert not np.all(np.diff(idx[:, 0]) >= 0)
    start = time.process_time()
    for _ in range(3):
        triplets.select_triplet_indices(emb, counts, alpha)
    per_call = (time.process_time() - start) / 3
    print('select_triplets 45x40 (%s): %.4f CPU s per call (the classic loop: 0.88 s on a quiet machine)'
          % (name, per_call))
    assert per_call < 0.3


@pytest.mark.parametrize('name', ['random', 'clustered'])
def test_semihard_and_hardest_rules(test_data_dir, name):
    emb, counts, alpha, _ = _reference(test_data_dir, name)
    dist, labels, a, p, vgg, semi = _brute_force(emb, counts, alpha)
    tr, num = triplets.select_triplet_indices(emb, counts, alpha, 'semihard', np.random.RandomState(1))
    assert num == len(a) == 45 * 40 * 39 // 2
    code_a, code_p = triplets.anchor_positive_pairs(counts)
    assert np.array_equal(code_a, a) and np.array_equal(code_p, p)   # the classic order
    assert len(tr) == int(np.count_nonzero(semi.any(axis=1)))
    _check_rule(tr, dist, labels, alpha, semihard=True)
    tr, _ = triplets.select_triplet_indices(emb, counts, alpha, 'hardest', np.random.RandomState(1))
    _check_rule(tr, dist, labels, alpha)
    masked = np.where(labels[:, None] == labels[None, :], np.inf, dist)
    assert np.array_equal(tr[:, 2], np.argmin(masked[tr[:, 0]], axis=1))
    assert len(tr) == int(np.count_nonzero(vgg.any(axis=1)))


@pytest.mark.parametrize('dense', [False, True], ids=['candidate-rows', 'whole-rows'])
@pytest.mark.parametrize('selection', ['vggface', 'semihard'])
def test_negatives_drawn_uniformly_from_valid_set(selection, dense, monkeypatch):
    monkeypatch.setattr(triplets, '_DENSE_FRACTION', 0.0 if dense else 1.0)
    rng = np.random.RandomState(3)
    counts = np.array([5, 1, 4, 6, 3, 5])
    emb = rng.randn(counts.sum(), 6)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    alpha = 0.5
    dist, labels, a, p, vgg, semi = _brute_force(emb, counts, alpha)
    valid = vgg if selection == 'vggface' else semi
    hits = np.zeros(valid.shape, np.int64)
    pair_index = {(x, y): i for i, (x, y) in enumerate(zip(a, p))}
    reps = 300
    for _ in range(reps):
        tr, _ = triplets.select_triplet_indices(emb, counts, alpha, selection, rng)
        assert len(tr) == np.count_nonzero(valid.any(axis=1))
        for x, y, n in tr:
            hits[pair_index[(x, y)], n] += 1
    assert np.all(hits[~valid] == 0)
    nvalid = valid.sum(axis=1)
    small = (nvalid > 0) & (nvalid <= 8)
    assert small.sum() >= 5
    assert np.all(hits[small][valid[small]] > 0)
    rows = nvalid > 0
    expected = np.broadcast_to((reps / nvalid[rows])[:, None], hits[rows].shape)[valid[rows]]
    chi2 = np.sum((hits[rows][valid[rows]] - expected) ** 2 / expected)
    dof = int(np.sum(nvalid[rows] - 1))
    assert chi2 < dof + 5 * np.sqrt(2 * dof), (chi2, dof)


def test_degenerate_embeddings_and_single_image_classes():
    counts = [3, 1, 2]
    emb = np.zeros((6, 4))
    tr, num = triplets.select_triplet_indices(emb, counts, 0.2)
    assert num == 3 + 1 and len(tr) == 4
    assert set(tr[:, 2]) <= {3, 4, 5} | {0, 1, 2}
    assert not np.any(np.isin(tr[:, 0], [3]))
    tr, _ = triplets.select_triplet_indices(emb, counts, 0.2, 'semihard')
    assert len(tr) == 0
    tr, num = triplets.select_triplet_indices(emb, [1, 1, 1], 0.2)
    assert num == 0 and tr.shape == (0, 3)


def test_sample_people():
    dataset = [ImageClass('p%d' % c, ['p%d/%d.png' % (c, i) for i in range(n)])
               for c, n in enumerate([10, 3, 7, 1, 12, 5])]
    np.random.seed(5)
    paths, num = triplets.sample_people(dataset, 3, 4)
    assert len(paths) == 12 and sum(num) == 12 and all(1 <= k <= 4 for k in num)
    start = 0
    owners = []
    for k in num:
        block = paths[start:start + k]
        owner = {p.split('/')[0] for p in block}
        assert len(owner) == 1 and len(set(block)) == k
        owners.append(owner.pop())
        start += k
    assert len(set(owners)) == len(owners)
    np.random.seed(5)
    assert triplets.sample_people(dataset, 3, 4) == (paths, num)
    paths, num = triplets.sample_people(dataset, 10, 20)
    assert len(paths) == 38 and sorted(num) == [1, 3, 5, 7, 10, 12]


def test_schedule_files_shipped():
    vgg2 = os.path.join(SCHEDULES, 'learning_rate_schedule_classifier_vggface2.txt')
    vgg = training.read_learning_rate_schedule(vgg2)
    assert vgg == [(0, 0.05), (100, 0.005), (200, 0.0005), (276, -1.0)]
    casia = os.path.join(SCHEDULES, 'learning_rate_schedule_classifier_casia.txt')
    assert training.read_learning_rate_schedule(casia) == [(0, 0.05), (60, 0.005), (80, 0.0005), (91, -1.0)]
    assert training.get_learning_rate_from_file(casia, 59) == 0.05
    assert training.get_learning_rate_from_file(casia, 60) == 0.005
    assert training.get_learning_rate_from_file(casia, 90) == 0.0005
    assert training.get_learning_rate_from_file(casia, 91) < 0
    retrain = os.path.join(SCHEDULES, 'learning_rate_retrain_tripletloss.txt')
    assert training.read_learning_rate_schedule(retrain)[-1][1] < 0


def test_schedule_file_errors(tmp_path):
    f = tmp_path / 'lr.txt'
    f.write_text('# comment\n0: 0.1  # trailing comment\n\n10: 0.01\n')
    assert training.read_learning_rate_schedule(str(f)) == [(0, 0.1), (10, 0.01)]
    assert training.get_learning_rate_from_file(str(f), 1000) == 0.01
    for text, words in [('0 0.1\n', 'expected'), ('0: 0.1\n5: x\n', 'line 2'), ('5: 0.1\n', 'epoch 0'),
                        ('0: 0.1\n0: 0.2\n', 'increase'), ('# nothing\n', 'no "epoch')]:
        f.write_text(text)
        with pytest.raises(FaceNetError, match=words):
            training.read_learning_rate_schedule(str(f))
    with pytest.raises(FaceNetError, match='not found'):
        training.read_learning_rate_schedule(str(tmp_path / 'missing.txt'))


def test_triplet_loss_value():
    import tensorflow as tf
    rng = np.random.RandomState(0)
    a, p, n = (rng.randn(6, 4).astype(np.float32) for _ in range(3))
    with tf.Graph().as_default():
        loss = triplets.triplet_loss(tf.constant(a), tf.constant(p), tf.constant(n), 0.2)
        with tf.compat.v1.Session() as sess:
            value = sess.run(loss)
    expected = np.mean(np.maximum(np.sum((a - p) ** 2, 1) - np.sum((a - n) ** 2, 1) + 0.2, 0))
    assert value == pytest.approx(expected, rel=1e-5)


def test_anchors_from_first_people_negatives_from_all():
    """As the classic code: sample_people may return more classes than people_per_batch; only the
    first people_per_batch are anchors, every image can be a negative."""
    rng = np.random.RandomState(0)
    emb = rng.randn(9, 4)
    paths = ['%d' % i for i in range(9)]
    trips, num_trips, nrof = triplets.select_triplets(emb, [3, 2, 4], paths, 1, 1000.0)
    assert num_trips == 3 and nrof == 3
    assert {(t[0], t[1]) for t in trips} == {('0', '1'), ('0', '2'), ('1', '2')}
    negatives = set()
    for _ in range(40):
        trips, _, _ = triplets.select_triplets(emb, [3, 2, 4], paths, 1, 1000.0)
        negatives |= {int(t[2]) for t in trips}
    assert negatives == set(range(3, 9))


@pytest.mark.parametrize('name', ['random', 'clustered'])
@pytest.mark.parametrize('selection', ['vggface', 'semihard', 'hardest'])
def test_batch_triplet_loss_admits_the_rule_triplets(test_data_dir, name, selection):
    """In-batch mining on a 90-image batch of the reference embeddings (whole classes, order shuffled)
    equals a brute force over every ordered anchor-positive pair and every other-class negative."""
    import tensorflow as tf
    emb, counts, alpha, _ = _reference(test_data_dir, name)
    labels = np.repeat(np.arange(len(counts)), counts)
    keep = np.flatnonzero(np.cumsum(counts)[labels] <= 90)
    order = np.random.RandomState(2).permutation(keep)
    e, lab = emb[order].astype(np.float32), labels[order].astype(np.int64)
    dist = cdist(e, e, 'sqeuclidean')
    a, p = np.nonzero((lab[:, None] == lab[None, :]) & ~np.eye(len(lab), dtype=bool))
    pos = dist[a, p][:, None]
    losses = pos - dist[a] + alpha
    if selection == 'hardest':
        losses = pos - np.where(lab[a][:, None] == lab[None, :], np.inf, dist[a]).min(axis=1, keepdims=True) + alpha
        admitted = losses > 0
    else:
        admitted = (lab[a][:, None] != lab[None, :]) & (losses > 0)
        if selection == 'semihard':
            admitted &= dist[a] > pos
    assert admitted.any() and (selection == 'hardest' or not admitted.all())
    with tf.Graph().as_default():
        loss, count = triplets.batch_triplet_loss(tf.constant(e), tf.constant(lab), alpha, selection)
        with tf.compat.v1.Session() as sess:
            loss, count = sess.run([loss, count])
    assert count == admitted.sum()
    assert loss == pytest.approx(losses[admitted].mean(), rel=1e-4)


def test_sample_images_labels_each_path_with_its_class():
    dataset = [ImageClass('p%d' % c, ['p%d/%d.png' % (c, i) for i in range(n)])
               for c, n in enumerate([10, 3, 7, 1, 12, 5])]
    np.random.seed(7)
    paths, num, labels = triplets.sample_images(dataset, 14, 4)
    assert len(paths) == 14 == sum(num) and max(num) <= 4
    assert [dataset[c].name for c in labels] == [p.split('/')[0] for p in paths]
    np.random.seed(7)
    people = triplets.sample_people(dataset, 3, 4)
    np.random.seed(7)
    assert triplets.sample_images(dataset, 12, 4)[:2] == people
