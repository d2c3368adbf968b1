"""Triplet sampling for triplet-loss training: people per batch, and online negative selection.

`select_triplets` keeps the classic contract (every anchor-positive pair of a class, a random
negative among the other-class images with `neg_dist2 - pos_dist2 < alpha`, shuffled result), but
is vectorised. Per chunk of anchor rows of the squared-distance matrix, only the entries below the
row's largest bound (its farthest positive + alpha) can be negatives; they become int64 keys holding
the row, the float32 distance bits and the column (the bits of a non-negative float sort as its value,
so comparisons stay exact), sorted row by row. A pair's valid negatives are then one run of its row's
keys, whose ends np.searchsorted finds, and a uniform pick in that run gives the negative's column.
"""
import numpy as np
from threadpoolctl import ThreadpoolController

from facenet_tf.tf_setup import configure

SELECTIONS = ('vggface', 'semihard', 'hardest')
_CHUNK_ROWS = 256
_DENSE_FRACTION = 0.5     # sort whole distance rows when more than this fraction are candidates
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


def _clamp(dist):
    """In place: negatives to 0, -0.0 to +0.0 (so that the float bits order as the values)."""
    np.maximum(dist, 0.0, out=dist)
    dist += 0.0
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
    Anchors come from the first nrof_anchor_classes classes (default all); negatives from every image."""
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
    nrows = int(anchors[-1]) + 1
    gram = (emb[:nrows] * np.float32(-2.0)) @ emb.T     # -2 x.y bit for bit (a power of two scales exactly)
    with _BLAS.limit(limits=1, user_api='blas'):     # the product above may use BLAS threads; the rest is
                                                     # small, where they cost more than they gain
        return _select_from_gram(gram, sq, counts, anchors, positives, alpha, selection, rng), num_trips


def _select_from_gram(gram, sq, counts, anchors, positives, alpha, selection, rng):
    """The triplets of select_triplet_indices from gram = -2 * anchor rows . all embeddings."""
    n = len(sq)
    col_bits = max(1, (n - 1).bit_length())
    row_shift = 31 + col_bits     # key = chunk row << row_shift | float32 bits of the distance << col_bits | column
    starts = np.cumsum(counts) - counts
    labels = np.repeat(np.arange(len(counts)), counts)
    found, negatives = [], []
    for r0 in range(0, len(gram), _CHUNK_ROWS):
        r1 = min(r0 + _CHUNK_ROWS, len(gram))
        lo, hi = np.searchsorted(anchors, [r0, r1])
        if lo == hi:
            continue
        # squared distances, in place; round-off may leave tiny negatives: used entries go through _clamp
        dist = gram[r0:r1]
        dist += sq[r0:r1, None]
        dist += sq
        rows = anchors[lo:hi] - r0
        pos = _clamp(dist[rows, positives[lo:hi]])
        bound = pos + np.float32(alpha)
        for label in np.unique(labels[r0:r1]):
            c0, c1 = starts[label], starts[label] + counts[label]
            dist[max(c0, r0) - r0:min(c1, r1) - r0, c0:c1] = np.inf
        cut = np.full(r1 - r0, -np.inf, np.float32)     # the largest bound of each row's pairs
        first = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
        cut[rows[first]] = np.maximum.reduceat(bound, first)
        keys = _sorted_candidate_keys(dist, cut, row_shift, col_bits)
        row_keys = rows.astype(np.int64) << row_shift
        end = np.searchsorted(keys, row_keys | _bits(bound) << col_bits)
        if selection == 'semihard':
            begin = np.searchsorted(keys, row_keys | (_bits(pos) + 1) << col_bits)
        else:
            begin = np.searchsorted(keys, row_keys)
        if selection == 'hardest':
            end = np.minimum(end, begin + 1)
        ok = end > begin
        pick = begin + np.minimum(np.floor(rng.random_sample(len(end)) * (end - begin)).astype(np.int64),
                                  np.maximum(end - begin - 1, 0))
        found.append(ok)
        negatives.append(keys[pick[ok]] & ((1 << col_bits) - 1))
    ok = np.concatenate(found)
    triplets = np.stack([anchors[ok], positives[ok], np.concatenate(negatives)], axis=1)
    return triplets[rng.permutation(len(triplets))]


def _sorted_candidate_keys(dist, cut, row_shift, col_bits):
    """Sort keys (row << row_shift | float32 bits << col_bits | column) holding at least the entries of
    each row of dist below that row's cut, in one sorted flat array. NumPy sorts many short rows several
    times faster than one long array, so rows are sorted in 2-D tables: the whole distance matrix when
    most entries are candidates, else one table per power-of-two width holding the rows with that many
    candidates (padding sorts last and is dropped)."""
    is_cand = dist < cut[:, None]
    per_row = np.count_nonzero(is_cand, axis=1)
    nrows, n = dist.shape
    if per_row.sum() > _DENSE_FRACTION * dist.size:
        table = _bits(_clamp(dist)) << col_bits
        table |= np.arange(nrows, dtype=np.int64)[:, None] << row_shift
        table |= np.arange(n)
        table.sort(axis=1)
        return table.ravel()
    flat = np.flatnonzero(is_cand)
    cand_rows = flat // n
    keys = cand_rows << row_shift
    keys |= _bits(_clamp(dist.ravel()[flat])) << col_bits
    keys |= flat - cand_rows * n
    place = np.arange(len(flat)) - (np.cumsum(per_row) - per_row)[cand_rows]     # position in its row
    widths = np.minimum(2 ** np.ceil(np.log2(np.maximum(per_row, 16))).astype(np.int64), n)
    widths[per_row < 2] = 0     # nothing to sort
    for width in np.unique(widths[widths > 0]):
        in_table = widths == width
        table_row = np.cumsum(in_table) - 1
        idx = np.flatnonzero(in_table[cand_rows])
        table = np.full((int(in_table.sum()), int(width)), np.iinfo(np.int64).max)
        table[table_row[cand_rows[idx]], place[idx]] = keys[idx]
        table.sort(axis=1)
        keys[idx] = table[np.arange(width) < per_row[in_table][:, None]]
    return keys


def _bits(values):
    """The bits of non-negative float32 values as int64 (they order as the values do)."""
    return np.ascontiguousarray(values, dtype=np.float32).view(np.int32).astype(np.int64)


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
    tf = configure()
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
    tf = configure()
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
