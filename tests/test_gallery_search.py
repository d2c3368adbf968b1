"""Exact gallery search (facenet_tf.gallery_search): the top-k of batched matrix products equals a
full sort, ties go to the lower gallery row, and the score block stays within its bound."""
import numpy as np
import pytest

from facenet_tf import gallery_search
from facenet_tf.errors import FaceNetError


@pytest.fixture(scope='module')
def data():
    rng = np.random.default_rng(0)
    gallery = gallery_search.l2_normalize(rng.standard_normal((3001, 64)))
    probes = gallery_search.l2_normalize(gallery[rng.integers(0, 3001, 257)] + 0.1 * rng.standard_normal((257, 64)))
    return gallery, probes


@pytest.mark.parametrize('k, query_batch, gallery_block', [(1, 64, 500), (1, 1024, 16384), (5, 100, 7),
                                                           (5, 257, 3001), (12, 33, 1000)])
def test_exact_search_equals_full_sort(data, k, query_batch, gallery_block):
    gallery, probes = data
    scores, index = gallery_search.search(gallery, probes, k, query_batch, gallery_block)
    full = probes.astype(np.float64) @ gallery.T.astype(np.float64)
    expected = np.argsort(-full, axis=1, kind='stable')[:, :k]
    assert np.array_equal(index, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(full, expected, axis=1), atol=1e-5)
    assert scores.dtype == np.float32 and index.dtype == np.int64


def test_ties_go_to_the_lower_row_across_blocks():
    gallery = np.array([[0, 1], [1, 0], [0, 1], [1, 0], [0.6, 0.8]], np.float32)
    probes = np.array([[1, 0], [0, 1], [0.6, 0.8]], np.float32)
    for block in (1, 2, 5):
        scores, index = gallery_search.search(gallery, probes, 1, gallery_block=block)
        assert index[:, 0].tolist() == [1, 0, 4]
        scores, index = gallery_search.search(gallery, probes, 3, gallery_block=block)
        assert index[:2].tolist() == [[1, 3, 4], [0, 2, 4]]
        np.testing.assert_allclose(scores[0], [1, 1, 0.6])


def test_k_beyond_the_gallery_and_block_bound():
    gallery = np.eye(3, dtype=np.float32)
    scores, index = gallery_search.search(gallery, np.array([[0.1, 0.2, 0.9]], np.float32), k=10)
    assert index.tolist() == [[2, 1, 0]]
    search = gallery_search.ExactSearch(np.zeros((1000000, 2), np.float32), query_batch=512, gallery_block=4096)
    assert search.block_bytes() == 512 * 4096 * 4  # the working memory, whatever the gallery's size


def test_refusals():
    with pytest.raises(FaceNetError, match='probes: expected a \\[N, 3\\] matrix'):
        gallery_search.search(np.eye(3), np.ones((2, 4)))
    with pytest.raises(FaceNetError, match='gallery: holds NaN'):
        gallery_search.search(np.array([[np.nan, 1.0]]), np.ones((1, 2)))
    with pytest.raises(FaceNetError, match='the gallery is empty'):
        gallery_search.ExactSearch(np.zeros((0, 4)))


def test_l2_distance_of_unit_rows():
    a, b = gallery_search.l2_normalize([[3.0, 4.0], [0.0, 0.0]])
    np.testing.assert_allclose(a, [0.6, 0.8])
    assert np.all(b == 0)
    np.testing.assert_allclose(gallery_search.l2_distance([1.0, 0.0, -1.0]), [0, np.sqrt(2), 2])

