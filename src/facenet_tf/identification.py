"""Open-set identification (1:N) of a dataset of people: a seeded trial protocol in the manner of
BLUFR (Liao et al., 2014) and its metrics (docs/identification.md).

Protocol, per trial t of a run with seed s (NumPy's default_rng((s, t)), so a trial does not depend
on how many trials run):
  1. eligible people: those with at least gallery_per_person + 1 images;
  2. nrof_enrolled of them are drawn at random and enrolled;
  3. for each enrolled person, gallery_per_person of their images (drawn at random) are the gallery,
     the rest are genuine probes;
  4. every image of every person not enrolled (including the people with a single image) is an
     impostor probe.
The draws follow the labels in sorted order and the rows in their order; the tool's rows are always
in dataset order (people sorted, images sorted within a person), so a split depends only on the
dataset, the seed and the flags.

Scores are cosine similarities (rows L2-normalised first); a probe's score for an enrolled person is
its best score over that person's gallery images (max fusion).
Metrics:
  - closed-set rank-k (CMC): share of genuine probes whose own person is among the k best people;
    the rank counts every enrolled person whose score is >= the own person's score (ties count
    against the probe: a tie for first place is rank 2);
  - open-set DIR at FPIR f: the threshold is set on the impostor probes' best scores so that at most
    floor(f x impostors) of them score above it (the next-highest impostor score; a probe passes when
    its score is strictly greater, so impostors tied at the threshold are all rejected and the
    realised FPIR may fall below f); DIR is the share of genuine probes of rank 1 whose own score
    passes that threshold.
Each metric is reported as the mean and standard deviation (np.std) over trials.
"""
from collections import namedtuple

import numpy as np

from facenet_tf.errors import FaceNetError
from facenet_tf.gallery_search import as_matrix, l2_normalize

PROBE_BATCH = 1024  # probes scored at a time: a PROBE_BATCH x gallery float32 block

Split = namedtuple('Split', 'gallery gallery_labels genuine genuine_labels impostors nrof_enrolled')
Scores = namedtuple('Scores', 'ranks genuine_scores impostor_scores')


def eligible_people(labels, gallery_per_person):
    """Labels (sorted) of the people with at least gallery_per_person + 1 rows."""
    people, counts = np.unique(np.asarray(labels), return_counts=True)
    return people[counts >= gallery_per_person + 1]


def split_trial(labels, rng, nrof_enrolled, gallery_per_person=1):
    """The Split of one trial (row indices into `labels`; gallery_labels and genuine_labels are
    0..nrof_enrolled-1, the enrolled person's index); a FaceNetError when the rows cannot give it."""
    labels = np.asarray(labels, np.int64)
    eligible = eligible_people(labels, gallery_per_person)
    if nrof_enrolled > len(eligible):
        raise FaceNetError('%d people to enrol but only %d have at least %d images (gallery_per_person + 1)'
                           % (nrof_enrolled, len(eligible), gallery_per_person + 1))
    enrolled = np.sort(rng.choice(eligible, nrof_enrolled, replace=False))
    person = np.full(labels.max() + 1 if len(labels) else 0, -1, np.int64)
    person[enrolled] = np.arange(nrof_enrolled)
    row_person = person[labels]
    key = rng.random(len(labels))
    order = np.lexsort((key, labels))  # rows grouped by label, in random order within each person
    sorted_labels = labels[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_labels)) + 1]
    within = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    place = np.empty(len(order), np.int64)
    place[order] = within  # each row's place in its person's random order
    is_enrolled = row_person >= 0
    gallery = np.flatnonzero(is_enrolled & (place < gallery_per_person))
    gallery = gallery[np.argsort(row_person[gallery], kind='stable')]
    genuine = np.flatnonzero(is_enrolled & (place >= gallery_per_person))
    impostors = np.flatnonzero(~is_enrolled)
    if not len(impostors):
        raise FaceNetError('no impostor probes: every person is enrolled (enrol fewer than %d people)'
                           % nrof_enrolled)
    return Split(gallery, row_person[gallery], genuine, row_person[genuine], impostors, nrof_enrolled)


def person_scores(probes, gallery, gallery_labels, nrof_enrolled):
    """[probes, nrof_enrolled] best cosine of each probe over each person's gallery rows (gallery
    rows grouped by label, every person 0..nrof_enrolled-1 present)."""
    scores = probes @ gallery.T
    if len(gallery) == nrof_enrolled:
        return scores
    starts = np.r_[0, np.flatnonzero(np.diff(gallery_labels)) + 1]
    return np.maximum.reduceat(scores, starts, axis=1)


def score_trial(embeddings, split, batch_size=PROBE_BATCH):
    """Scores of one trial: each genuine probe's rank and own score, each impostor's best score;
    probes go batch_size at a time (memory: batch_size x gallery float32)."""
    gallery = embeddings[split.gallery]
    ranks = np.empty(len(split.genuine), np.int64)
    own = np.empty(len(split.genuine), np.float32)
    for start in range(0, len(split.genuine), batch_size):
        rows = split.genuine[start:start + batch_size]
        scores = person_scores(embeddings[rows], gallery, split.gallery_labels, split.nrof_enrolled)
        mine = scores[np.arange(len(rows)), split.genuine_labels[start:start + batch_size]]
        own[start:start + len(rows)] = mine
        ranks[start:start + len(rows)] = np.sum(scores >= mine[:, None], axis=1)
    best = np.empty(len(split.impostors), np.float32)
    for start in range(0, len(split.impostors), batch_size):
        rows = split.impostors[start:start + batch_size]
        best[start:start + len(rows)] = person_scores(embeddings[rows], gallery, split.gallery_labels,
                                                      split.nrof_enrolled).max(axis=1)
    return Scores(ranks, own, best)


def threshold_at_fpir(impostor_scores, fpir):
    """(threshold, realised FPIR): a probe is accepted when its score is > threshold; at most
    floor(fpir x impostors) impostor scores exceed it."""
    scores = np.sort(np.asarray(impostor_scores, np.float64))[::-1]
    if not len(scores):
        raise FaceNetError('no impostor probes to set a threshold on')
    allowed = int(np.floor(fpir * len(scores) + 1e-9))
    threshold = scores[allowed] if allowed < len(scores) else -np.inf
    return threshold, float(np.mean(scores > threshold))


def metrics(scores, ranks=(1, 5), fpirs=(0.01, 0.001)):
    """{'rank-k': rate, 'DIR@FPIR=f': rate, 'threshold@FPIR=f': cosine, 'FPIR@FPIR=f': realised} of
    one trial's Scores."""
    result = {}
    if not len(scores.ranks):
        raise FaceNetError('no genuine probes (enrolled people have no image besides their gallery ones)')
    for k in ranks:
        result['rank-%d' % k] = float(np.mean(scores.ranks <= k))
    for f in fpirs:
        threshold, realised = threshold_at_fpir(scores.impostor_scores, f)
        result['DIR@FPIR=%g' % f] = float(np.mean((scores.ranks == 1) & (scores.genuine_scores > threshold)))
        result['threshold@FPIR=%g' % f] = float(threshold)
        result['FPIR@FPIR=%g' % f] = realised
    return result


def run_trials(embeddings, labels, trials=10, seed=0, nrof_enrolled=1000, gallery_per_person=1,
               ranks=(1, 5), fpirs=(0.01, 0.001), batch_size=PROBE_BATCH, progress=None):
    """(per-trial metric dicts, per-trial Split sizes) of the protocol on rows `embeddings` of people
    `labels`; `progress` (a progress.Progress) is updated once a trial."""
    embeddings = l2_normalize(as_matrix('embeddings', embeddings))
    labels = np.asarray(labels, np.int64)
    if len(labels) != len(embeddings):
        raise FaceNetError('%d labels for %d embeddings' % (len(labels), len(embeddings)))
    results, sizes = [], []
    for t in range(trials):
        split = split_trial(labels, np.random.default_rng((seed, t)), nrof_enrolled, gallery_per_person)
        results.append(metrics(score_trial(embeddings, split, batch_size), ranks, fpirs))
        sizes.append(dict(gallery=len(split.gallery), genuine=len(split.genuine), impostors=len(split.impostors)))
        if progress is not None:
            progress.update()
    return results, sizes


def summary(results):
    """{metric: (mean, std, min, max)} over trials."""
    return {key: (float(np.mean(v)), float(np.std(v)), float(np.min(v)), float(np.max(v)))
            for key, v in ((key, [r[key] for r in results]) for key in results[0])}
