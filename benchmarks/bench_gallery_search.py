"""Speed of identification against a large gallery: exact search (facenet_tf.gallery_search) and,
when installed, faiss-cpu and hnswlib indexes, on synthetic embeddings.

    python benchmarks/bench_gallery_search.py [--sizes 10000,100000,1000000] [--probes 2048]
                                              [--methods exact,faiss_flat,ivf,faiss_hnsw,hnswlib]
                                              [--like lfw_embeddings.h5]

Synthetic faces: each gallery row is one enrolled person. Without --like a person is a random unit
vector and a probe is that row plus Gaussian noise, renormalised, with cosine about 0.6 to it (the
worst case for an approximate index: no structure); with --like (an embeddings file, e.g. the
published model's LFW embeddings) people and images are drawn with the covariances of that file's
people and images (see synthetic()), and a probe is another image of a gallery person. Each
(method, size) runs in its own child process so its peak resident memory (ru_maxrss) is its own; the
table gives probes/s of the search alone (index building apart), the index build time, recall@1
against the exact answer and the peak memory. faiss-cpu and hnswlib are optional (pip install them).
"""
import argparse
import multiprocessing
import os
import resource
import time

import _paths  # noqa: F401 (puts src/ on sys.path)
from _machine import cpu_line
import numpy as np

from facenet_tf.gallery_search import ExactSearch, l2_normalize

DIM = 128
PROBE_NOISE = 0.118  # per dimension: cosine(probe, its gallery row) about 1 / sqrt(1 + 128 x 0.118^2) = 0.6


def synthetic(size, probes, like=None, seed=0):
    """(gallery [size, D], probes [probes, D], the gallery row of each probe), float32 unit rows, made
    in chunks so the peak memory is about the gallery's. Without `like`, people are random unit
    vectors (128-D) and probes their rows plus isotropic noise; with `like` (an embeddings file),
    people's centres and each image's offset from its centre are Gaussian with the covariances of
    that file's people and images (a gallery row and its probe are two images of one person)."""
    rng = np.random.default_rng(seed)
    if like is None:
        centre_mean, centre_root, noise_root = np.zeros(DIM), np.eye(DIM), PROBE_NOISE * np.eye(DIM)
    else:
        centre_mean, centre_root, noise_root = spread_of(like)
    dim = len(centre_mean)
    truth = rng.integers(0, size, probes)
    probe_centres = np.empty((probes, dim), np.float32)
    gallery = np.empty((size, dim), np.float32)
    for start in range(0, size, 65536):
        n = min(65536, size - start)
        centres = centre_mean + rng.standard_normal((n, dim), dtype=np.float32) @ centre_root
        if like is None:
            centres = l2_normalize(centres)
            gallery[start:start + n] = centres
        else:
            gallery[start:start + n] = l2_normalize(centres + rng.standard_normal((n, dim), dtype=np.float32)
                                                    @ noise_root)
        mine = (truth >= start) & (truth < start + n)
        probe_centres[mine] = centres[truth[mine] - start]
    noisy = probe_centres + rng.standard_normal((probes, dim), dtype=np.float32) @ noise_root
    return gallery, l2_normalize(noisy), truth


def spread_of(path):
    """(mean of people's centres, square roots of the covariance of the centres and of images
    around their centre), float32, from the people with 2+ images of an embeddings file."""
    from facenet_tf import embeddings_file
    data = embeddings_file.read(path)
    emb = l2_normalize(data.embeddings).astype(np.float64)
    people, labels, counts = np.unique(data.labels, return_inverse=True, return_counts=True)
    means = np.zeros((len(people), emb.shape[1]))
    np.add.at(means, labels, emb)
    means /= counts[:, None]
    several = counts[labels] >= 2
    within = emb[several] - means[labels[several]]
    within *= np.sqrt(counts[labels[several]] / (counts[labels[several]] - 1.0))[:, None]  # unbiased per person
    centres = means[counts >= 2]

    def root(cov):
        values, vectors = np.linalg.eigh(cov)
        return (vectors * np.sqrt(np.maximum(values, 0))).T.astype(np.float32)
    return (centres.mean(axis=0).astype(np.float32), root(np.cov(centres, rowvar=False)),
            root(within.T @ within / len(within)))


class InvertedFileSearch(object):
    """Approximate top-k inner-product search with a faiss inverted-file index: the gallery is split
    into about sqrt(G) k-means cells and each probe is compared with the rows of its `nprobe`
    nearest cells only (k-means on at most 64 rows a cell, seeded); the search() of ExactSearch.
    Measured, not used by the library: see docs/identification.md."""

    def __init__(self, gallery, nprobe=32, seed=1):
        try:
            import faiss
        except ImportError:
            raise SystemExit('the ivf method needs faiss-cpu (pip install faiss-cpu)')
        self.gallery = np.ascontiguousarray(gallery, np.float32)
        dim, size = self.gallery.shape[1], len(self.gallery)
        nlist = max(1, int(np.sqrt(size)))
        self.index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(seed).choice(size, min(size, 64 * nlist), replace=False)
        self.index.cp.seed = seed
        self.index.train(self.gallery[np.sort(sample)])
        self.index.add(self.gallery)
        self.index.nprobe = min(int(nprobe), nlist)

    def search(self, queries, k=1):
        queries = np.ascontiguousarray(queries, np.float32)
        k = min(int(k), len(self.gallery))
        scores, index = self.index.search(queries, k)
        return scores.astype(np.float32), index.astype(np.int64)


def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def build(method, gallery, setting):
    """A search function queries -> top-1 indices for `method` over `gallery`."""
    if method == 'exact':
        index = ExactSearch(gallery)
        return lambda q: index.search(q, 1)[1][:, 0]
    if method == 'ivf':
        index = InvertedFileSearch(gallery, nprobe=setting)
        return lambda q: index.search(q, 1)[1][:, 0]
    import faiss
    dim = gallery.shape[1]
    if method == 'faiss_flat':
        index = faiss.IndexFlatIP(dim)
        index.add(gallery)
    elif method == 'faiss_hnsw':
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.add(gallery)
        index.hnsw.efSearch = setting
    else:
        raise ValueError(method)
    return lambda q: index.search(q, 1)[1][:, 0]


def hnswlib_build(gallery, setting):
    import hnswlib
    index = hnswlib.Index(space='ip', dim=gallery.shape[1])
    index.init_index(max_elements=len(gallery), M=16, ef_construction=100, random_seed=1)
    index.add_items(gallery, np.arange(len(gallery)))
    index.set_ef(setting)
    return lambda q: index.knn_query(q, k=1)[0][:, 0].astype(np.int64)


def one(job):
    """Measure one (method, size, setting) in this (child) process."""
    method, size, probes, setting, like = job
    gallery, queries, truth = synthetic(size, probes, like)
    exact = ExactSearch(gallery).search(queries, 1)[1][:, 0] if method != 'exact' else None
    start = time.time()
    find = hnswlib_build(gallery, setting) if method == 'hnswlib' else build(method, gallery, setting)
    built = time.time() - start
    find(queries[:16])
    start = time.time()
    found = find(queries)
    seconds = time.time() - start
    recall = 1.0 if exact is None else float(np.mean(found == exact))
    return dict(method=method, size=size, setting=setting, build=built, rate=probes / seconds,
                recall=recall, truth=float(np.mean(found == truth)), peak=peak_mib(),
                gallery=gallery.nbytes / 2.0 ** 20)



SETTINGS = {'exact': [None], 'ivf': [16, 64, 128, 256], 'faiss_flat': [None], 'faiss_hnsw': [64, 128],
            'hnswlib': [64, 128]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sizes', default='10000,100000,1000000')
    parser.add_argument('--probes', type=int, default=2048)
    parser.add_argument('--methods', default='exact,faiss_flat,ivf')
    parser.add_argument('--like', default=None,
                        help='An embeddings file whose spread of people and images the synthetic faces follow.')
    args = parser.parse_args()
    print('CPU: %s; load average %.1f' % (cpu_line(), os.getloadavg()[0]))
    print('Synthetic faces: %s' % ('like %s' % args.like if args.like else 'random people, isotropic noise'))
    print('| method | setting | gallery | probes/s | build s | recall@1 vs exact | top-1 = true row | '
          'peak RSS MiB (gallery MiB) |')
    print('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |')
    context = multiprocessing.get_context('fork')
    for size in [int(s) for s in args.sizes.split(',')]:
        for method in args.methods.split(','):
            for setting in SETTINGS[method]:
                with context.Pool(1) as pool:
                    r = pool.apply(one, ((method, size, args.probes, setting, args.like),))
                print('| %s | %s | %d | %.0f | %.1f | %.4f | %.4f | %.0f (%.0f) |' % (
                    r['method'], '-' if setting is None else setting, size, r['rate'], r['build'],
                    r['recall'], r['truth'], r['peak'], r['gallery']), flush=True)


if __name__ == '__main__':
    main()
