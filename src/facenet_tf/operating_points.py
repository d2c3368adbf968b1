"""Operating points of a verification model, and the threshold file that carries one.

An operating point answers "which distance threshold lets in a share f of strangers (the false-accept
rate, FAR), and how many genuine pairs does it accept (TAR)?". A pair is accepted when its distance
is below the threshold, as in evaluation.py. With N impostor (different-person) pairs at most
k = floor(f N) of them may be accepted, so the threshold is the (k+1)-th smallest impostor distance:
exact, from the sorted distances, with no threshold grid and no interpolation; it is the largest
threshold whose measured FAR is <= f. When f N < 1 no impostor may be accepted and the pairs say
nothing about f: the point is marked not meaningful.

Folds: the threshold of each fold comes from the pairs outside it (held out), and the fold's own
pairs give its TAR and FAR there: their mean and spread are the cross-validated numbers, and the
range of those thresholds is kept. The 95% interval of the threshold is distribution-free: the
threshold whose true FAR is f lies between the l-th and u-th smallest impostor distances, l and u
the 2.5% and 97.5% points of Binomial(N, f) (the number of impostors below it). A resampling
interval (jackknife over folds) was tried first: with a few allowed false accepts the count
floor(f N) changes with the folds' size and biases it (on LFW at 1e-3 its standard error was 0.10,
a bootstrap's 0.06).

The threshold file is a small JSON object (THRESHOLD_FIELDS) written by facenet-calibrate and read by
recognize, classifier and the API. It is untrusted input: read_threshold_file caps its size, refuses
unknown keys, NaN, control characters, and checks every type and range.
"""
import dataclasses
import json
import math
import os

import numpy as np

from facenet_tf.errors import FaceNetError

DEFAULT_FARS = (1e-2, 1e-3, 1e-4)
FORMAT = 'facenet-threshold'
VERSION = 1
MAX_FILE_BYTES = 64 << 10
MAX_TEXT = 1000
METRICS = {'l2': 'L2 distance', 'squared_l2': 'squared L2 distance',
           'angle': 'angle (arccos of cosine similarity) / pi'}


def allowed_false_accepts(far, nrof_impostors):
    """floor(far * nrof_impostors), robust to the rounding of far (0.001 * 3000 is 3, not 2)."""
    return int(math.floor(far * nrof_impostors * (1 + 1e-12)))


def thresholds_at(impostor_sorted, fars):
    """Thresholds (one per FAR) from ascending impostor distances: the (k+1)-th smallest, k the
    allowed false accepts; inf when every impostor may be accepted, nan without impostors."""
    n = impostor_sorted.size
    if n == 0:
        return np.full(len(fars), np.nan)
    k = np.array([allowed_false_accepts(f, n) for f in fars])
    out = impostor_sorted[np.minimum(k, n - 1)].astype(np.float64)
    out[k >= n] = np.inf
    return out


def accepted_share(sorted_dist, thresholds):
    """Share of the (ascending) distances strictly below each threshold; nan for an empty set."""
    if sorted_dist.size == 0:
        return np.full(len(thresholds), np.nan)
    return np.searchsorted(sorted_dist, thresholds, side='left') / float(sorted_dist.size)


@dataclasses.dataclass
class OperatingPoint:
    """One target FAR: threshold, TAR and measured FAR on all pairs; per fold the held-out threshold
    (from the other folds) and the fold's TAR and FAR at it; the 95% interval of the threshold."""
    far: float
    threshold: float
    tar: float
    measured_far: float
    nrof_genuine: int
    nrof_impostor: int
    fold_thresholds: np.ndarray
    fold_tar: np.ndarray
    fold_far: np.ndarray
    ci95: tuple = (float('nan'), float('nan'))   # order_statistic_interval

    @property
    def false_accepts_allowed(self):
        return allowed_false_accepts(self.far, self.nrof_impostor)

    @property
    def meaningful(self):
        """False when the target FAR is below 1 / number of impostor pairs."""
        return self.false_accepts_allowed >= 1

    @property
    def tar_mean(self):
        return float(np.nanmean(self.fold_tar)) if np.any(np.isfinite(self.fold_tar)) else float('nan')

    @property
    def tar_std(self):
        return float(np.nanstd(self.fold_tar)) if np.any(np.isfinite(self.fold_tar)) else float('nan')

    @property
    def held_out_far(self):
        return float(np.nanmean(self.fold_far)) if np.any(np.isfinite(self.fold_far)) else float('nan')

    @property
    def fold_threshold_range(self):
        t = self.fold_thresholds
        return (float(np.min(t)), float(np.max(t))) if np.all(np.isfinite(t)) else (float('nan'), float('nan'))


def order_statistic_interval(impostor_sorted, far, level=0.95):
    """(low, high) holding the threshold whose true FAR is `far` with probability >= level: the l-th
    and u-th smallest impostor distances (1-based), l the largest count with P(B < l) < (1-level)/2
    and u - 1 the smallest with P(B <= u - 1) >= (1+level)/2, B ~ Binomial(N, far) the impostors
    below that threshold. 0 when l is 0, inf when u exceeds N."""
    from scipy.stats import binom
    n, alpha = impostor_sorted.size, (1 - level) / 2
    low = int(binom.ppf(alpha, n, far))
    high = int(binom.ppf(1 - alpha, n, far)) + 1
    return (float(impostor_sorted[low - 1]) if low >= 1 else 0.0,
            float(impostor_sorted[high - 1]) if high <= n else math.inf)


def default_folds(nrof_pairs, nrof_folds):
    """Unshuffled K-fold test sets, as the classic evaluation."""
    from facenet_tf.evaluation import kfold_test_sets
    return kfold_test_sets(nrof_pairs, nrof_folds)


def operating_points(dist, issame, fars=DEFAULT_FARS, folds=None, nrof_folds=10):
    """An OperatingPoint per target FAR, from pair distances and issame flags. `folds` are the test
    pair indices of each fold (they may overlap: each fold's threshold comes from the pairs outside
    it); default unshuffled `nrof_folds`-fold."""
    dist = np.asarray(dist, np.float64).reshape(-1)
    issame = np.asarray(issame, bool).reshape(-1)
    if dist.shape != issame.shape:
        raise FaceNetError('%d distances for %d issame flags' % (dist.size, issame.size))
    if not np.all(np.isfinite(dist)):
        raise FaceNetError('the pair distances hold NaN or infinite values')
    fars = [check_far(f) for f in fars]
    if int(issame.sum()) == 0 or int((~issame).sum()) == 0:
        raise FaceNetError('operating points need both same-person and different-person pairs '
                           '(%d same, %d different)' % (int(issame.sum()), int((~issame).sum())))
    genuine, impostor = np.sort(dist[issame]), np.sort(dist[~issame])
    thresholds = thresholds_at(impostor, fars)
    tar, far = accepted_share(genuine, thresholds), accepted_share(impostor, thresholds)
    folds = default_folds(dist.size, nrof_folds) if folds is None else folds
    fold_t = np.full((len(folds), len(fars)), np.nan)
    fold_tar, fold_far = np.full_like(fold_t, np.nan), np.full_like(fold_t, np.nan)
    for k, test in enumerate(folds):
        inside = np.zeros(dist.size, bool)
        inside[np.asarray(test, np.int64)] = True
        fold_t[k] = thresholds_at(np.sort(dist[~inside & ~issame]), fars)
        fold_tar[k] = accepted_share(np.sort(dist[inside & issame]), fold_t[k])
        fold_far[k] = accepted_share(np.sort(dist[inside & ~issame]), fold_t[k])
    return [OperatingPoint(f, float(thresholds[j]), float(tar[j]), float(far[j]), genuine.size, impostor.size,
                           fold_t[:, j], fold_tar[:, j], fold_far[:, j], order_statistic_interval(impostor, f))
            for j, f in enumerate(fars)]


def check_far(far):
    """A target FAR as a float in (0, 1), or FaceNetError."""
    if isinstance(far, bool) or not isinstance(far, (int, float, np.floating)) or not 0 < far < 1:
        raise FaceNetError('a target FAR must be a number between 0 and 1 (exclusive), got %r' % (far,))
    return float(far)


def far_text(far):
    """1e-3 as '1e-3', 0.005 as '0.005'."""
    exponent = round(math.log10(far))
    return '1e%d' % exponent if math.isclose(far, 10.0 ** exponent, rel_tol=1e-9) else '%g' % far


def table(rows, metric_name='distance', with_l2=False):
    """Lines of the operating-point table; rows are (set name, OperatingPoint). with_l2 adds the
    threshold as an L2 distance (for squared L2 thresholds: its square root)."""
    head = ['set', 'FAR', 'TAR (all)', 'TAR folds', 'threshold (%s)' % metric_name]
    head += ['L2'] if with_l2 else []
    head += ['95% CI', 'held-out FAR', 'impostors', 'meaningful']
    body = []
    for name, p in rows:
        lo, hi = p.ci95
        line = [name, far_text(p.far), '%.5f' % p.tar, '%.5f+-%.5f' % (p.tar_mean, p.tar_std), '%.5f' % p.threshold]
        line += ['%.5f' % math.sqrt(p.threshold)] if with_l2 else []
        line += ['[%.4f,%s]' % (lo, '%.4f' % hi if math.isfinite(hi) else 'inf'), '%.5f' % p.held_out_far,
                 '%d' % p.nrof_impostor,
                 'yes' if p.meaningful else 'no']
        body.append(line)
    widths = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
    lines = ['  '.join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head] + body]
    if any(not p.meaningful for _, p in rows):
        lines.append('meaningful no: the FAR is below 1 / the number of impostor (different-person) pairs, '
                     'which cannot measure it')
    return lines


# ---- threshold files ----

THRESHOLD_FIELDS = {   # name: (type, meaning)
    'format': (str, FORMAT), 'version': (int, 'format version'),
    'model': (str, 'the model the threshold was measured with'),
    'metric': (str, 'l2 (the distance compare, recognize, classifier print), squared_l2 or angle'),
    'far': (float, 'target false-accept rate'), 'threshold': (float, 'accept when distance < threshold'),
    'ci95': (list, '95% interval of the threshold (order statistics; high null: unbounded)'),
    'threshold_folds': (list, 'lowest and highest threshold of the folds (each from the other folds)'),
    'tar': (float, 'true-accept rate at the threshold, all pairs'),
    'tar_folds_mean': (float, 'TAR of each fold at the threshold of the other folds, mean'),
    'tar_folds_std': (float, '... standard deviation'),
    'held_out_far': (float, 'FAR of each fold at the threshold of the other folds, mean'),
    'nrof_genuine': (int, 'same-person pairs'), 'nrof_impostor': (int, 'different-person pairs'),
    'nrof_folds': (int, 'folds'), 'source': (str, 'the pairs: a folder, pairs file or set name'),
}


def threshold_record(point, metric, model, source, nrof_folds):
    """The threshold file's content (a dict) for an OperatingPoint."""
    if metric not in METRICS:
        raise FaceNetError('unknown metric %r (one of %s)' % (metric, ', '.join(METRICS)))
    lo, hi = point.ci95
    fold_lo, fold_hi = point.fold_threshold_range
    if not all(math.isfinite(x) for x in (point.threshold, lo, fold_lo, fold_hi, point.tar_mean, point.tar_std,
                                          point.held_out_far)):
        raise FaceNetError('%s: every fold needs same-person and different-person pairs for a threshold '
                           'with an interval (use fewer folds or more images)' % source)
    return {'format': FORMAT, 'version': VERSION, 'model': str(model), 'metric': metric, 'far': point.far,
            'threshold': point.threshold, 'ci95': [lo, hi if math.isfinite(hi) else None],
            'threshold_folds': [fold_lo, fold_hi], 'tar': point.tar,
            'tar_folds_mean': point.tar_mean, 'tar_folds_std': point.tar_std,
            'held_out_far': point.held_out_far, 'nrof_genuine': int(point.nrof_genuine),
            'nrof_impostor': int(point.nrof_impostor), 'nrof_folds': int(nrof_folds), 'source': str(source)}


def write_threshold_file(path, record):
    """Write a threshold_record as JSON, atomically (after checking it reads back)."""
    from facenet_tf.files import write_atomic
    text = json.dumps(record, indent=1) + '\n'
    check_threshold_record(path, json.loads(text))
    write_atomic(path, text)


@dataclasses.dataclass(frozen=True)
class ThresholdFile:
    """A checked threshold file: its path and its record (THRESHOLD_FIELDS)."""
    path: str
    record: dict

    @property
    def metric(self):
        return self.record['metric']

    @property
    def threshold(self):
        return self.record['threshold']

    @property
    def far(self):
        return self.record['far']

    @property
    def meaningful(self):
        return allowed_false_accepts(self.record['far'], self.record['nrof_impostor']) >= 1


def _refuse_constant(name):
    raise ValueError('%s is not a number a threshold file may hold' % name)


def read_threshold_file(path):
    """The ThresholdFile at `path`: at most MAX_FILE_BYTES of UTF-8 JSON, exactly THRESHOLD_FIELDS,
    each of its type and range; FaceNetError naming the file otherwise."""
    path = os.path.expanduser(os.fspath(path))
    if not os.path.isfile(path):
        raise FaceNetError('%s: threshold file not found (write one with facenet-calibrate)' % path
                           if not os.path.exists(path) else '%s: not a regular file (a threshold file)' % path)
    with open(path, 'rb') as f:
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise FaceNetError('%s: more than %d bytes: not a threshold file' % (path, MAX_FILE_BYTES))
    try:
        record = json.loads(data.decode('utf-8'), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise FaceNetError('%s: not a threshold file (JSON): %s' % (path, str(e).splitlines()[0] if str(e)
                                                                     else type(e).__name__))
    return ThresholdFile(path, check_threshold_record(path, record))


def _number(path, name, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not lo <= value <= hi:
        raise FaceNetError('%s: %s must be a number in [%g, %g], got %r' % (path, name, lo, hi, value))
    return float(value)


def check_threshold_record(path, record):
    """The record with its numbers as floats, or FaceNetError('<path>: <what is wrong>')."""
    if not isinstance(record, dict):
        raise FaceNetError('%s: a threshold file holds one JSON object, found %s' % (path, type(record).__name__))
    missing = sorted(set(THRESHOLD_FIELDS) - set(record))
    unknown = sorted(set(record) - set(THRESHOLD_FIELDS))
    if missing or unknown:
        raise FaceNetError('%s: not a threshold file: %s' % (path, '; '.join(
            x for x in ('missing %s' % ', '.join(missing) if missing else '',
                        'unknown %s' % ', '.join(repr(u)[:40] for u in unknown[:5]) if unknown else '') if x)))
    out = {}
    for name, (kind, _) in THRESHOLD_FIELDS.items():
        value = record[name]
        if kind is str:
            if not isinstance(value, str) or len(value) > MAX_TEXT or any(ord(c) < 32 or ord(c) == 127 for c in value):
                raise FaceNetError('%s: %s must be text of at most %d printable characters' % (path, name, MAX_TEXT))
            out[name] = value
        elif kind is int:
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1 << 40:
                raise FaceNetError('%s: %s must be a non-negative integer, got %r' % (path, name, value))
            out[name] = value
    if out['format'] != FORMAT or out['version'] != VERSION:
        raise FaceNetError('%s: not a threshold file of this version (format %r version %r; expected %r %d)'
                           % (path, out['format'][:40], out['version'], FORMAT, VERSION))
    if out['metric'] not in METRICS:
        raise FaceNetError('%s: metric must be one of %s, got %r' % (path, ', '.join(METRICS), out['metric'][:40]))
    if out['nrof_impostor'] < 1 or out['nrof_genuine'] < 1 or out['nrof_folds'] < 2:
        raise FaceNetError('%s: needs at least one pair of each kind and two folds' % path)
    high = 1.0 if out['metric'] == 'angle' else 1e6
    out['threshold'] = _number(path, 'threshold', record['threshold'], 0.0, high)
    for name in ('far', 'tar', 'tar_folds_mean', 'tar_folds_std', 'held_out_far'):
        out[name] = _number(path, name, record[name], 0.0, 1.0)
    if not 0 < out['far'] < 1:
        raise FaceNetError('%s: far must lie between 0 and 1 (exclusive), got %r' % (path, out['far']))
    lo, hi = out['ci95'] = _range(path, 'ci95', record['ci95'], high, open_high=True)
    if not lo <= out['threshold'] <= (math.inf if hi is None else hi):
        raise FaceNetError('%s: ci95 %r does not hold the threshold %g' % (path, out['ci95'], out['threshold']))
    out['threshold_folds'] = _range(path, 'threshold_folds', record['threshold_folds'], high)
    return out


def _range(path, name, pair, high, open_high=False):
    """[low, high] of two numbers in [0, high], low <= high; with open_high the second may be null."""
    if not isinstance(pair, list) or len(pair) != 2:
        raise FaceNetError('%s: %s must be a list of two numbers' % (path, name))
    lo = _number(path, name, pair[0], 0.0, high)
    hi = None if open_high and pair[1] is None else _number(path, name, pair[1], lo, high)
    return [lo, hi]


def l2_threshold(threshold_file):
    """The file's threshold as an L2 distance (the scale of compare, recognize, classifier and the
    API): squared L2 is converted, an angle refused."""
    metric, t = threshold_file.metric, threshold_file.threshold
    if metric == 'l2':
        return t
    if metric == 'squared_l2':
        return math.sqrt(t)
    raise FaceNetError('%s: the threshold is an %s (validate --distance_metric 1), these tools compare L2 '
                       'distances: calibrate again with facenet-calibrate' % (threshold_file.path, METRICS[metric]))


def describe(threshold_file, what='threshold'):
    """'<what> 0.97 from <file>: FAR 1e-3 on 6000 pairs of <source> (model <model>)', with a warning
    when the file's pairs cannot measure its FAR."""
    r = threshold_file.record
    line = '%s %.4f from %s: FAR %s on %d pairs of %s (model %s)' % (
        what, l2_threshold(threshold_file), threshold_file.path, far_text(r['far']),
        r['nrof_genuine'] + r['nrof_impostor'], r['source'], r['model'])
    if not threshold_file.meaningful:
        line += '; warning: %d different-person pairs cannot measure a FAR below 1/%d' % (
            r['nrof_impostor'], r['nrof_impostor'])
    return line


def threshold_from_file(path, note, what='unknown threshold'):
    """The L2 threshold of a threshold file, with the note saying which FAR it stands for."""
    threshold_file = read_threshold_file(path)
    value = l2_threshold(threshold_file)
    note(describe(threshold_file, what))
    return value
