"""Nearest-neighbour search of probe embeddings in a gallery of enrolled embeddings, on the CPU.

`ExactSearch` is brute force by matrix products: probes go `query_batch` at a time against blocks of
`gallery_block` gallery rows, and only a running top-k per probe is kept, so the working memory is
one `query_batch x gallery_block` float32 score block (64 MiB by default) whatever the gallery's
size: a full probes x gallery matrix is never made. Scores are inner products; on L2-normalised
embeddings (FaceNet's) that is the cosine similarity, and the squared L2 distance is `2 - 2 score`
(`l2_distance`), so the nearest face by distance is the one of highest score.

Results are sorted best first; among equal scores the lower gallery index comes first (with k = 1
always; with k > 1 which of several rows tied at the k-th place is kept is unspecified).
Measured speed and why no approximate index is used: docs/identification.md.
"""
import numpy as np

from facenet_tf.errors import FaceNetError

QUERY_BATCH = 1024      # probes per pass over the gallery
GALLERY_BLOCK = 16384   # gallery rows per score block (QUERY_BATCH x GALLERY_BLOCK float32 = 64 MiB)


def as_matrix(name, values, dim=None):
    """`values` as a C-contiguous float32 [N, D] array of finite numbers, or a FaceNetError naming it."""
    matrix = np.ascontiguousarray(values, dtype=np.float32)
    if matrix.ndim != 2 or (dim is not None and matrix.shape[1] != dim):
        raise FaceNetError('%s: expected a [N, %s] matrix, got shape %s'
                           % (name, dim if dim is not None else 'D', matrix.shape))
    if not np.all(np.isfinite(matrix)):
        raise FaceNetError('%s: holds NaN or infinite values' % name)
    return matrix


def l2_normalize(values):
    """Rows scaled to unit L2 norm (zero rows stay zero), float32."""
    values = np.asarray(values, dtype=np.float32)
    norms = np.linalg.norm(values, axis=1, keepdims=True)
    return values / np.maximum(norms, np.float32(1e-12))


def l2_distance(scores):
    """L2 distance of unit-norm embeddings from their inner-product score."""
    return np.sqrt(np.maximum(2.0 - 2.0 * np.asarray(scores, np.float64), 0.0))


def _merge_top(best_scores, best_index, scores, index, k):
    """The k best of two candidate sets per row (scores [Q, a] and [Q, b] with their indices)."""
    all_scores = np.concatenate([best_scores, scores], axis=1)
    all_index = np.concatenate([best_index, index], axis=1)
    if all_scores.shape[1] > k:
        keep = np.argpartition(-all_scores, k - 1, axis=1)[:, :k]
        all_scores = np.take_along_axis(all_scores, keep, axis=1)
        all_index = np.take_along_axis(all_index, keep, axis=1)
    return all_scores, all_index


def _sorted(scores, index):
    """Rows ordered by score descending, then gallery index ascending."""
    order = np.lexsort((index, -scores), axis=1) if scores.shape[1] > 1 else np.zeros_like(index)
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(index, order, axis=1)


class ExactSearch(object):
    """Exact top-k inner-product search over a fixed gallery (float32 [G, D], kept as given: normalise
    first for cosine scores)."""

    def __init__(self, gallery, query_batch=QUERY_BATCH, gallery_block=GALLERY_BLOCK):
        if int(query_batch) < 1 or int(gallery_block) < 1:
            raise FaceNetError('gallery search: query_batch and gallery_block must be at least 1')
        self.gallery = as_matrix('gallery', gallery)
        if not len(self.gallery):
            raise FaceNetError('gallery search: the gallery is empty')
        self.query_batch = int(query_batch)
        self.gallery_block = int(gallery_block)

    def __len__(self):
        return len(self.gallery)

    @property
    def dim(self):
        return self.gallery.shape[1]

    def block_bytes(self):
        """Bytes of the largest score block a search makes (the working memory besides the gallery)."""
        return 4 * min(self.query_batch, max(1, len(self.gallery))) * min(self.gallery_block, len(self.gallery))

    def search(self, queries, k=1):
        """(scores float32 [Q, k], gallery indices int64 [Q, k]) of the k best gallery rows of each
        query, best first (k is cut to the gallery's size)."""
        queries = as_matrix('probes', queries, self.dim)
        k = min(int(k), len(self.gallery))
        if k < 1:
            raise FaceNetError('gallery search: k must be at least 1')
        scores = np.empty((len(queries), k), np.float32)
        index = np.empty((len(queries), k), np.int64)
        for start in range(0, len(queries), self.query_batch):
            part = queries[start:start + self.query_batch]
            scores[start:start + len(part)], index[start:start + len(part)] = self._search_batch(part, k)
        return scores, index

    def _search_batch(self, part, k):
        rows = np.arange(len(part))
        best_scores = np.full((len(part), 0), -np.inf, np.float32)
        best_index = np.zeros((len(part), 0), np.int64)
        block = np.empty((len(part), min(self.gallery_block, len(self.gallery))), np.float32)
        for g0 in range(0, len(self.gallery), self.gallery_block):
            chunk = self.gallery[g0:g0 + self.gallery_block]
            out = block[:, :len(chunk)]
            np.matmul(part, chunk.T, out=out)
            if k == 1:
                top = np.argmax(out, axis=1)[:, None]
            elif len(chunk) > k:
                top = np.argpartition(-out, k - 1, axis=1)[:, :k]
            else:
                top = np.broadcast_to(np.arange(len(chunk)), (len(part), len(chunk)))
            top_scores = out[rows[:, None], top]
            if k == 1 and best_scores.shape[1]:
                better = top_scores[:, 0] > best_scores[:, 0]  # strict: the earlier row wins a tie
                best_scores[better, 0] = top_scores[better, 0]
                best_index[better, 0] = top[better, 0] + g0
            else:
                best_scores, best_index = _merge_top(best_scores, best_index, top_scores, top + g0, k)
        return _sorted(best_scores, best_index)


def search(gallery, queries, k=1, query_batch=QUERY_BATCH, gallery_block=GALLERY_BLOCK):
    """One-call exact search: ExactSearch(gallery, ...).search(queries, k)."""
    return ExactSearch(gallery, query_batch, gallery_block).search(queries, k)
