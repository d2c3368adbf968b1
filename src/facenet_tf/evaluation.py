"""Face verification metrics on pairs of embeddings: ROC, accuracy, VAL@FAR, AUC, EER.

The numbers are those of the classic FaceNet evaluation (10 unshuffled folds, best accuracy threshold
chosen on the training folds, VAL at the threshold where the training folds' FAR is 1e-3), computed
for all thresholds at once: the distances are sorted once per fold and every threshold's counts come
from one `searchsorted`, instead of one pass over the pairs per threshold.
"""
import math

import numpy as np
from scipy import interpolate
from scipy.optimize import brentq

from facenet_tf.errors import FaceNetError

ROC_THRESHOLDS = np.arange(0, 4, 0.01)
VAL_THRESHOLDS = np.arange(0, 4, 0.001)
FAR_TARGET = 1e-3


def distance(embeddings1, embeddings2, distance_metric=0):
    """Row-wise distance: 0 = squared Euclidean, 1 = angle (arccos of cosine similarity) / pi."""
    if distance_metric == 0:
        diff = np.subtract(embeddings1, embeddings2)
        return np.sum(np.square(diff), 1)
    if distance_metric == 1:
        dot = np.sum(np.multiply(embeddings1, embeddings2), axis=1)
        norm = np.linalg.norm(embeddings1, axis=1) * np.linalg.norm(embeddings2, axis=1)
        return np.arccos(dot / norm) / math.pi
    raise FaceNetError('undefined distance metric %r (0: squared Euclidean, 1: cosine)' % (distance_metric,))


def kfold_test_sets(nrof_pairs, nrof_folds):
    """Test index arrays of unshuffled K-fold (the first nrof_pairs % nrof_folds folds one longer)."""
    if nrof_folds < 2:
        raise FaceNetError('the number of folds must be at least 2, got %d' % nrof_folds)
    if nrof_pairs < nrof_folds:
        raise FaceNetError('cannot split %d pairs into %d folds' % (nrof_pairs, nrof_folds))
    return np.array_split(np.arange(nrof_pairs), nrof_folds)


def _splits(nrof_pairs, nrof_folds, folds):
    """(train, test) index arrays per fold; `folds` (test index arrays) overrides unshuffled K-fold."""
    if folds is None:
        folds = kfold_test_sets(nrof_pairs, nrof_folds)
    for test_set in folds:
        mask = np.ones(nrof_pairs, bool)
        mask[test_set] = False
        yield np.flatnonzero(mask), np.asarray(test_set)


def _fold_distances(embeddings1, embeddings2, train_set, distance_metric, subtract_mean):
    if subtract_mean:
        mean = np.mean(np.concatenate([embeddings1[train_set], embeddings2[train_set]]), axis=0)
    else:
        mean = 0.0
    return distance(embeddings1 - mean, embeddings2 - mean, distance_metric)


def _counts_below(dist, issame, thresholds):
    """For each threshold t: (#same pairs with dist < t, #different pairs with dist < t)."""
    same = np.sort(dist[issame])
    diff = np.sort(dist[~issame])
    return (np.searchsorted(same, thresholds, side='left'),
            np.searchsorted(diff, thresholds, side='left'))


def _rates(dist, issame, thresholds):
    """tpr, fpr, accuracy per threshold, as the classic calculate_accuracy (a rate is 0 with no pairs)."""
    tp, fp = _counts_below(dist, issame, thresholds)
    n_same = int(np.sum(issame))
    n_diff = issame.size - n_same
    tn = n_diff - fp
    tpr = tp / float(n_same) if n_same else np.zeros(len(thresholds))
    fpr = fp / float(n_diff) if n_diff else np.zeros(len(thresholds))
    acc = (tp + tn) / float(dist.size)
    return tpr, fpr, acc


def calculate_accuracy(threshold, dist, actual_issame):
    """tpr, fpr, accuracy of 'same' = dist < threshold for one threshold (classic signature)."""
    tpr, fpr, acc = _rates(np.asarray(dist), np.asarray(actual_issame, bool), np.array([threshold]))
    return float(tpr[0]), float(fpr[0]), float(acc[0])


def _fold_distance_list(embeddings1, embeddings2, splits, distance_metric, subtract_mean):
    """Pair distances per fold (computed once when no mean is subtracted: they are then equal)."""
    if not subtract_mean:
        dist = distance(embeddings1, embeddings2, distance_metric)
        return [dist] * len(splits)
    return [_fold_distances(embeddings1, embeddings2, train_set, distance_metric, True)
            for train_set, _ in splits]


def _prepare(embeddings1, embeddings2, actual_issame, nrof_folds, folds):
    if embeddings1.shape != embeddings2.shape:
        raise FaceNetError('the two sides of the pairs have different shapes: %s and %s'
                        % (embeddings1.shape, embeddings2.shape))
    actual_issame = np.asarray(actual_issame, bool)
    nrof_pairs = min(len(actual_issame), embeddings1.shape[0])
    return actual_issame, list(_splits(nrof_pairs, nrof_folds, folds))


def _roc(dists, splits, actual_issame, thresholds):
    thresholds = np.asarray(thresholds)
    tprs = np.zeros((len(splits), len(thresholds)))
    fprs = np.zeros((len(splits), len(thresholds)))
    accuracy = np.zeros(len(splits))
    for fold_idx, ((train_set, test_set), dist) in enumerate(zip(splits, dists)):
        _, _, acc_train = _rates(dist[train_set], actual_issame[train_set], thresholds)
        best = int(np.argmax(acc_train))
        tprs[fold_idx], fprs[fold_idx], acc_test = _rates(dist[test_set], actual_issame[test_set], thresholds)
        accuracy[fold_idx] = acc_test[best]
    return np.mean(tprs, 0), np.mean(fprs, 0), accuracy


def calculate_roc(thresholds, embeddings1, embeddings2, actual_issame, nrof_folds=10, distance_metric=0,
                  subtract_mean=False, folds=None):
    """Mean test-fold tpr/fpr per threshold, and per-fold accuracy at the best training threshold."""
    actual_issame, splits = _prepare(embeddings1, embeddings2, actual_issame, nrof_folds, folds)
    dists = _fold_distance_list(embeddings1, embeddings2, splits, distance_metric, subtract_mean)
    return _roc(dists, splits, actual_issame, thresholds)


def _check_fold_pairs(fold_idx, part, issame):
    n_same = int(np.sum(issame))
    if n_same == 0 or n_same == issame.size:
        missing = 'same-person' if n_same == 0 else 'different-person'
        raise FaceNetError('fold %d has no %s pair in its %s set: every fold needs both kinds of pairs '
                        '(use fewer folds, or a pairs file that mixes them in every fold)'
                        % (fold_idx + 1, missing, part))


def threshold_at_far(far_train, thresholds, far_target):
    """Threshold where the (non-decreasing) training FAR curve reaches far_target, interpolated linearly.

    The curve has runs of equal FAR values; the classic code (a linear spline through all points)
    interpolates between the last threshold of the run at or below the target and the first threshold
    of the next run. A target equal to the curve's last value gives that threshold when the value
    occurs once, and 0 when it ends a run (the spline is degenerate there). 0 when the FAR never
    reaches the target.
    """
    far_train = np.asarray(far_train, float)
    thresholds = np.asarray(thresholds, float)
    if np.max(far_train) < far_target:
        return 0.0
    lo = int(np.searchsorted(far_train, far_target, side='right')) - 1
    if lo < 0:
        return float(thresholds[0])
    if lo == far_train.size - 1:
        if far_train.size > 1 and far_train[-2] == far_train[-1]:
            return 0.0
        return float(thresholds[-1])
    hi = lo + 1
    x0, x1 = far_train[lo], far_train[hi]
    y0, y1 = thresholds[lo], thresholds[hi]
    return float(y0 + (far_target - x0) * (y1 - y0) / (x1 - x0))


def calculate_val_far(threshold, dist, actual_issame):
    """VAL (share of same pairs accepted) and FAR (share of different pairs accepted) at threshold."""
    actual_issame = np.asarray(actual_issame, bool)
    predict_issame = np.less(dist, threshold)
    n_same = int(np.sum(actual_issame))
    n_diff = actual_issame.size - n_same
    if n_same == 0 or n_diff == 0:
        raise FaceNetError('VAL/FAR need both same-person and different-person pairs')
    true_accept = int(np.sum(predict_issame & actual_issame))
    false_accept = int(np.sum(predict_issame & ~actual_issame))
    return float(true_accept) / float(n_same), float(false_accept) / float(n_diff)


def _val(dists, splits, actual_issame, thresholds, far_target):
    thresholds = np.asarray(thresholds)
    val = np.zeros(len(splits))
    far = np.zeros(len(splits))
    for fold_idx, ((train_set, test_set), dist) in enumerate(zip(splits, dists)):
        issame_train = actual_issame[train_set]
        _check_fold_pairs(fold_idx, 'training', issame_train)
        _check_fold_pairs(fold_idx, 'test', actual_issame[test_set])
        _, fa = _counts_below(dist[train_set], issame_train, thresholds)
        far_train = fa / float(np.sum(~issame_train))
        threshold = threshold_at_far(far_train, thresholds, far_target)
        val[fold_idx], far[fold_idx] = calculate_val_far(threshold, dist[test_set], actual_issame[test_set])
    return np.mean(val), np.std(val), np.mean(far)


def calculate_val(thresholds, embeddings1, embeddings2, actual_issame, far_target, nrof_folds=10,
                  distance_metric=0, subtract_mean=False, folds=None):
    """Mean and std over folds of VAL, and mean FAR, at the training folds' FAR=far_target threshold."""
    actual_issame, splits = _prepare(embeddings1, embeddings2, actual_issame, nrof_folds, folds)
    dists = _fold_distance_list(embeddings1, embeddings2, splits, distance_metric, subtract_mean)
    return _val(dists, splits, actual_issame, thresholds, far_target)


def evaluate(embeddings, actual_issame, nrof_folds=10, distance_metric=0, subtract_mean=False, folds=None):
    """Classic lfw.evaluate: rows 2i and 2i+1 of `embeddings` form pair i.

    Returns (tpr, fpr, accuracy, val, val_std, far). `folds` optionally gives the test pair indices of
    each fold (default: unshuffled K-fold over the pairs in order).
    """
    embeddings = np.asarray(embeddings)
    actual_issame = np.asarray(actual_issame, bool)
    if embeddings.shape[0] != 2 * actual_issame.size:
        raise FaceNetError('%d embeddings for %d pairs (need two per pair)' % (embeddings.shape[0],
                                                                           actual_issame.size))
    embeddings1 = embeddings[0::2]
    embeddings2 = embeddings[1::2]
    actual_issame, splits = _prepare(embeddings1, embeddings2, actual_issame, nrof_folds, folds)
    dists = _fold_distance_list(embeddings1, embeddings2, splits, distance_metric, subtract_mean)
    tpr, fpr, accuracy = _roc(dists, splits, actual_issame, ROC_THRESHOLDS)
    val, val_std, far = _val(dists, splits, actual_issame, VAL_THRESHOLDS, FAR_TARGET)
    return tpr, fpr, accuracy, val, val_std, far


def area_under_curve(x, y):
    """Trapezoidal area under y(x) for x monotonic (non-decreasing, or non-increasing: the area is
    then taken the other way), as scikit-learn's metrics.auc, without its 1-2 s import."""
    x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
    if x.shape[0] < 2:
        raise ValueError('at least 2 points are needed to compute the area under a curve, got %d' % x.shape[0])
    step = np.diff(x)
    direction = 1.0
    if np.any(step < 0):
        if not np.all(step <= 0):
            raise ValueError('x is neither increasing nor decreasing: %s' % x)
        direction = -1.0
    return float(direction * np.trapezoid(y, x))


def auc_eer(fpr, tpr):
    """Area under the ROC curve and equal error rate, computed as the classic validate_on_lfw."""
    auc = area_under_curve(fpr, tpr)
    roc = interpolate.interp1d(fpr, tpr)
    try:
        eer = brentq(lambda x: 1. - x - roc(x), 0., 1.)
    except ValueError:
        eer = float('nan')
    return auc, eer
