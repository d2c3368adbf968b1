"""Triplet sampling for triplet-loss training: people per batch, and online negative selection.

`select_triplets` keeps the classic contract (every anchor-positive pair of a class, a random
negative among the other-class images with `neg_dist2 - pos_dist2 < alpha`, shuffled result), but
is vectorised: each anchor row of the squared-distance matrix is sorted once, as int64 keys that hold
the float32 distance in their high bits and the column in their low bits (the bits of a non-negative
float sort as its value, so comparisons stay exact). A pair's valid negatives are then one run of its sorted row, found by a
vectorised bisection, and a uniform pick in that run gives the negative's column. Rows are processed
in cache-sized chunks.
"""
import numpy as np
from threadpoolctl import ThreadpoolController

SELECTIONS = ('vggface', 'semihard', 'hardest')
_CHUNK_ROWS = 128
_BLAS = ThreadpoolController()


def sample_people(dataset, people_per_batch, images_per_person):
    """Draw up to images_per_person shuffled images from randomly ordered classes until
    people_per_batch * images_per_person paths are taken (classic). Returns (image_paths, num_per_class)."""
    image_paths, num_per_class, _ = sample_images(dataset, people_per_batch * images_per_person, images_per_person)
    return image_paths, num_per_class


def sample_images(dataset, nrof_images, images_per_person):
    """sample_people's draw of nrof_images paths; also returns each path's class index in dataset."""
    nrof_classes = len(dataset)
    class_indices = np.arange(nrof_classes)
    np.random.shuffle(class_indices)
    i = 0
    image_paths = []
    num_per_class = []
    labels = []
    while len(image_paths) < nrof_images and i < nrof_classes:
        cls = dataset[class_indices[i]]
        nrof_images_in_class = len(cls)
        image_indices = np.arange(nrof_images_in_class)
        np.random.shuffle(image_indices)
        nrof_from_class = min(nrof_images_in_class, images_per_person, nrof_images - len(image_paths))
        image_paths += [cls.image_paths[j] for j in image_indices[:nrof_from_class]]
        num_per_class.append(nrof_from_class)
        labels += [class_indices[i]] * nrof_from_class
        i += 1
    return image_paths, num_per_class, np.array(labels, dtype=np.int64)


def squared_distances(embeddings, rows=slice(None), sq=None):
    """Squared L2 distances (float32 as the classic code, >= +0.0) from embeddings[rows] to every
    embedding; sq: the squared norms when already known."""
    emb = np.asarray(embeddings, dtype=np.float32)
    if sq is None:
        sq = np.einsum('ij,ij->i', emb, emb)
    dist = emb[rows] @ emb.T
    dist *= -2.0
    dist += sq[rows, None]
    dist += sq[None, :]
    np.maximum(dist, 0.0, out=dist)
    dist += 0.0     # -0.0 becomes +0.0, whose bits sort first
    return dist


def anchor_positive_pairs(nrof_images_per_class):
    """Index arrays (anchor, positive) of every pair a < p inside each class, in the classic order."""
    counts = np.asarray(nrof_images_per_class, dtype=np.int64)
    starts = np.cumsum(counts) - counts
    anchors, positives = [], []
    for start, k in zip(starts, counts):
        if k >= 2:
            a, p = np.triu_indices(int(k), 1)
            anchors.append(a + start)
            positives.append(p + start)
    if not anchors:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(anchors), np.concatenate(positives)


def select_triplet_indices(embeddings, nrof_images_per_class, alpha, selection='vggface', rng=None,
                           nrof_anchor_classes=None):
    """Index triplets (T, 3) of (anchor, positive, negative), shuffled, and the number of
    anchor-positive pairs examined. Rules, with squared distances:
    vggface: random negative with neg - pos < alpha; semihard: also pos < neg (FaceNet);
    hardest: the closest negative, when it satisfies neg - pos < alpha.
    Anchors come from the first nrof_anchor_classes classes (default all); negatives from every image.
    BLAS runs single-threaded here: its threads cost more than they gain on these small products."""
    with _BLAS.limit(limits=1, user_api='blas'):
        return _select_triplet_indices(embeddings, nrof_images_per_class, alpha, selection, rng,
                                       nrof_anchor_classes)


def _select_triplet_indices(embeddings, nrof_images_per_class, alpha, selection, rng, nrof_anchor_classes):
    """The body of select_triplet_indices."""
    if selection not in SELECTIONS:
        raise ValueError('unknown triplet selection %r (choose from %s)' % (selection, ', '.join(SELECTIONS)))
    rng = np.random if rng is None else rng
    counts = np.asarray(nrof_images_per_class, dtype=np.int64)
    n = int(counts.sum())
    anchors, positives = anchor_positive_pairs(counts[:nrof_anchor_classes])
    num_trips = len(anchors)
    if num_trips == 0:
        return np.zeros((0, 3), np.int64), 0
    emb = np.asarray(embeddings, dtype=np.float32)[:n]
    sq = np.einsum('ij,ij->i', emb, emb)
    col_bits = max(1, (n - 1).bit_length())     # key = float32 bits of the distance << col_bits | column
    columns = np.arange(n, dtype=np.int64)
    starts = np.cumsum(counts) - counts
    labels = np.repeat(np.arange(len(counts)), counts)
    found, negatives = [], []
    for r0 in range(0, int(anchors[-1]) + 1, _CHUNK_ROWS):
        r1 = min(r0 + _CHUNK_ROWS, n)
        lo, hi = np.searchsorted(anchors, [r0, r1])
        if lo == hi:
            continue
        dist = squared_distances(emb, slice(r0, r1), sq)
        rows = anchors[lo:hi] - r0
        pos = dist[rows, positives[lo:hi]]
        for label in np.unique(labels[r0:r1]):
            c0, c1 = starts[label], starts[label] + counts[label]
            dist[max(c0, r0) - r0:min(c1, r1) - r0, c0:c1] = np.inf
        keys = dist.view(np.int32).astype(np.int64)
        keys <<= col_bits
        keys |= columns
        keys.sort(axis=1)
        end = _count_below(keys, rows, _key(pos + np.float32(alpha), col_bits))
        if selection == 'hardest':
            begin = np.zeros_like(end)
            end = np.minimum(end, 1)
        elif selection == 'semihard':
            begin = _count_below(keys, rows, _key(pos, col_bits) + (1 << col_bits))
        else:
            begin = np.zeros_like(end)
        ok = end > begin
        pick = begin + np.minimum(np.floor(rng.random_sample(len(end)) * (end - begin)).astype(np.int64),
                                  np.maximum(end - begin - 1, 0))
        found.append(ok)
        negatives.append(keys[rows[ok], pick[ok]] & ((1 << col_bits) - 1))
    ok = np.concatenate(found)
    triplets = np.stack([anchors[ok], positives[ok], np.concatenate(negatives)], axis=1)
    return triplets[rng.permutation(len(triplets))], num_trips


def _key(values, col_bits):
    """Sort keys of non-negative float32 values with empty column bits."""
    return np.ascontiguousarray(values, dtype=np.float32).view(np.int32).astype(np.int64) << col_bits


def _count_below(sorted_keys, rows, bound):
    """For each i, the number of entries of sorted_keys[rows[i]] below bound[i] (vectorised bisection)."""
    ncols = sorted_keys.shape[1]
    flat, base = sorted_keys.ravel(), rows * ncols
    lo = np.zeros(len(rows), np.int64)
    hi = np.full(len(rows), ncols, np.int64)
    for _ in range(ncols.bit_length()):
        mid = (lo + hi) >> 1
        below = flat[base + np.minimum(mid, ncols - 1)] < bound
        below &= lo < hi
        lo = np.where(below, mid + 1, lo)
        hi = np.where(below, hi, mid)
    return lo


def select_triplets(embeddings, nrof_images_per_class, image_paths, people_per_batch, alpha,
                    selection='vggface', rng=None):
    """Classic signature: (triplets as (anchor, positive, negative) path tuples, num_trips, nrof_triplets).
    As the classic code: anchors from the first people_per_batch classes, negatives from all images."""
    idx, num_trips = select_triplet_indices(embeddings, nrof_images_per_class, alpha, selection, rng,
                                            nrof_anchor_classes=people_per_batch)
    paths = np.asarray(image_paths, dtype=object)
    triplets = [tuple(t) for t in paths[idx]]
    return triplets, num_trips, len(triplets)


def triplet_loss(anchor, positive, negative, alpha):
    """Mean over the batch of max(|a - p|^2 - |a - n|^2 + alpha, 0) (a TensorFlow tensor)."""
    import tensorflow as tf
    with tf.name_scope('triplet_loss'):
        pos_dist = tf.reduce_sum(tf.square(anchor - positive), 1)
        neg_dist = tf.reduce_sum(tf.square(anchor - negative), 1)
        return tf.reduce_mean(tf.maximum(pos_dist - neg_dist + alpha, 0.0), 0)


def batch_triplet_loss(embeddings, labels, alpha, selection='semihard'):
    """Triplet loss mined inside a batch (TensorFlow tensors): every anchor-positive pair of the batch
    (same label) with the negatives (other labels) that `selection` admits, by the rules of
    select_triplet_indices: vggface every negative with neg - pos < alpha, semihard also pos < neg,
    hardest the closest negative. The loss is the mean of the admitted triplets' losses (all of them
    positive); returns (loss, number of admitted triplets)."""
    import tensorflow as tf
    if selection not in SELECTIONS:
        raise ValueError('unknown triplet selection %r (choose from %s)' % (selection, ', '.join(SELECTIONS)))
    with tf.name_scope('batch_triplet_loss'):
        sq = tf.reduce_sum(tf.square(embeddings), 1)
        dist = tf.maximum(sq[:, None] - 2.0 * tf.matmul(embeddings, embeddings, transpose_b=True) + sq[None, :], 0.0)
        same = tf.equal(labels[:, None], labels[None, :])
        positive = tf.logical_and(same, tf.logical_not(tf.eye(tf.shape(labels)[0], dtype=tf.bool)))
        negative = tf.logical_not(same)
        if selection == 'hardest':
            closest = tf.reduce_min(tf.where(negative, dist, tf.fill(tf.shape(dist), np.float32(np.inf))), 1)
            losses = dist - closest[:, None] + alpha
            admitted = tf.logical_and(positive, losses > 0.0)
        else:
            losses = dist[:, :, None] - dist[:, None, :] + alpha
            admitted = positive[:, :, None] & negative[:, None, :] & (losses > 0.0)
            if selection == 'semihard':
                admitted &= dist[:, None, :] > dist[:, :, None]
        count = tf.reduce_sum(tf.cast(admitted, tf.float32))
        loss = tf.reduce_sum(tf.where(admitted, losses, tf.zeros_like(losses))) / tf.maximum(count, 1.0)
        return loss, count
