"""Grouping faces by person (cluster.py): faces of a folder of photos (every face, cropped as the
aligner does) or of aligned crops, embedded in batches, clustered with scikit-learn, written as one
folder per cluster plus the noise apart and a clusters.csv; pairwise precision/recall and NMI
against folder identities.

Complexity, N faces: DBSCAN computes each face's neighbours within eps (brute force on the
high-dimensional embeddings: O(N^2) distances in chunks, memory for the neighbour lists); agglomerative
clustering builds the full linkage tree from all pairwise distances (O(N^2) memory: 10,000 faces
take about 400 MB; O(N^2 log N) time). Thousands of faces take seconds; the embedding pass
dominates (about 25 faces/s for InceptionResnetV1 on 2 cores).
"""
import csv
import io
import os
import shutil

import numpy as np
from sklearn.cluster import DBSCAN, AgglomerativeClustering
from sklearn.metrics import normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix

from align import aligner
from facenet_tf import dataset, files
from facenet_tf import images as image_lib
from facenet_tf.errors import FaceNetError
from facenet_tf.progress import Progress

NOISE = -1
DEFAULT_EPS = {'dbscan': 0.8, 'agglomerative': 0.9}   # best pairwise F1 of the published model on LFW
NOISE_FOLDER = 'noise'
CROPS_FOLDER = 'crops'
CSV_NAME = 'clusters.csv'
CSV_COLUMNS = ('cluster', 'crop', 'source', 'face', 'main', 'x1', 'y1', 'x2', 'y2', 'score')


def image_files(input_dir):
    """Image files under input_dir, recursively, sorted (hidden files and folders left out)."""
    found = []
    for folder, subdirs, names in os.walk(input_dir):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith('.'))
        found.extend(os.path.join(folder, n) for n in sorted(names)
                     if n.lower().endswith(dataset.IMAGE_EXTENSIONS) and not n.startswith('.'))
    return found


class Face(object):
    """One face: its crop file, source photo, index in the photo, whether it is the face the aligner
    would choose there (`main`), box and detection score (None for aligned input)."""

    def __init__(self, crop, source, index, main, box=None, score=None):
        self.crop, self.source, self.index, self.main, self.box, self.score = crop, source, index, main, box, score


def detect_and_embed(pipeline, input_dir, crops_dir, note, batch=8, stream=None):
    """(faces, embeddings) of every face of every photo under input_dir: detected in batches of
    photos, each crop written as a PNG under crops_dir (mirroring the photo's folder, named
    <photo stem>_<k>.png), embedded with the pipeline. Unreadable photos get a note."""
    import cv2
    paths = image_files(input_dir)
    progress = Progress(len(paths), 'Detecting and embedding', 'photos', stream=stream)
    faces, embeddings = [], []
    for start in range(0, len(paths), batch):
        images, kept = [], []
        for path in paths[start:start + batch]:
            try:
                images.append(image_lib.read_rgb(path))
                kept.append(path)
            except image_lib.ImageReadError as e:
                note('cannot read %s (%s): left out' % (path, e))
        crops = []
        for path, image, (boxes, _) in zip(kept, images, pipeline.detect(images) if images else []):
            main = aligner.choose_face(boxes, image.shape) if boxes.shape[0] else -1
            rel = os.path.splitext(os.path.relpath(path, input_dir))[0]
            for k in range(boxes.shape[0]):
                crop, bb = aligner.crop_face(image, boxes[k, 0:4], pipeline.image_size, pipeline.margin)
                if crop is None:
                    continue
                out = os.path.join(crops_dir, '%s_%d.png' % (rel, k))
                os.makedirs(os.path.dirname(out), exist_ok=True)
                cv2.imwrite(out, cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
                faces.append(Face(out, path, k, k == main, bb, float(boxes[k, 4])))
                crops.append(pipeline.standardize(crop).astype(np.float32))
        if crops:
            embeddings.append(pipeline.embed(crops))
        progress.update(len(paths[start:start + batch]))
    (stream or progress.stream).write(progress.summary() + '\n')
    dim = embeddings[0].shape[1] if embeddings else 0
    return faces, np.concatenate(embeddings) if embeddings else np.zeros((0, dim), np.float32)


def aligned_faces(input_dir):
    """Faces of a folder of aligned crops: every image file is one face (its own source)."""
    return [Face(path, path, 0, True) for path in image_files(input_dir)]


def cluster(embeddings, method='dbscan', eps=0.8, min_samples=3, n_clusters=None):
    """Cluster labels (0 = the largest cluster, NOISE = -1) of the embeddings.

    dbscan: faces with min_samples faces (itself included) within eps (L2) are cores; clusters are
    the cores joined through eps and the faces within eps of them; the rest is noise.
    agglomerative: average linkage, merging while the mean L2 distance between two groups is below
    eps (or down to n_clusters groups when given); groups smaller than min_samples are noise."""
    emb = np.asarray(embeddings, np.float64)
    if len(emb) == 0:
        return np.zeros(0, np.int64)
    if method == 'dbscan':
        labels = DBSCAN(eps=eps, min_samples=min_samples).fit_predict(emb)
    elif method == 'agglomerative':
        if len(emb) < 2:
            labels = np.zeros(len(emb), np.int64)
        elif n_clusters:
            labels = AgglomerativeClustering(n_clusters=min(n_clusters, len(emb)), linkage='average').fit_predict(emb)
        else:
            labels = AgglomerativeClustering(n_clusters=None, distance_threshold=eps,
                                             linkage='average').fit_predict(emb)
        sizes = np.bincount(labels)
        labels = np.where(sizes[labels] < min_samples, NOISE, labels)
    else:
        raise FaceNetError('unknown clustering method %r (dbscan or agglomerative)' % method)
    return relabel_by_size(labels)


def relabel_by_size(labels):
    """Cluster numbers ordered by size (0 = largest; ties by first face), noise kept as NOISE."""
    labels = np.asarray(labels)
    out = np.full(len(labels), NOISE, np.int64)
    ids = [c for c in np.unique(labels) if c != NOISE]
    order = sorted(ids, key=lambda c: (-np.sum(labels == c), int(np.argmax(labels == c))))
    for new, old in enumerate(order):
        out[labels == old] = new
    return out


def folder_name(label):
    return NOISE_FOLDER if label == NOISE else 'cluster_%03d' % label


def write_clusters(output_dir, faces, labels, copy=False):
    """One folder per cluster and `noise/`, each holding links (or copies) of its faces' crops named
    <n>_<crop name>; clusters.csv (written atomically) lists every face with its cluster, crop, source
    photo, face index in the photo, whether it is the photo's main face, box and score."""
    rows = []
    for n, (face, label) in enumerate(zip(faces, labels)):
        folder = os.path.join(output_dir, folder_name(label))
        os.makedirs(folder, exist_ok=True)
        target = os.path.join(folder, '%05d_%s' % (n, os.path.basename(face.crop)))
        if copy:
            shutil.copyfile(face.crop, target)
        else:
            os.symlink(os.path.relpath(os.path.abspath(face.crop), folder), target)
        box = [''] * 4 if face.box is None else [int(v) for v in face.box]
        rows.append([int(label), os.path.relpath(target, output_dir), face.source, face.index, int(face.main)]
                    + box + ['' if face.score is None else '%.4f' % face.score])
    text = io.StringIO()
    writer = csv.writer(text, lineterminator='\n')
    writer.writerow(CSV_COLUMNS)
    writer.writerows(rows)
    files.write_atomic(os.path.join(output_dir, CSV_NAME), text.getvalue())


def identities(faces, input_dir):
    """The identity of each face for scoring: the first-level folder of INPUT_DIR holding its photo,
    for the main face of each photo; None for the other faces (people in the background)."""
    out = []
    for face in faces:
        parts = os.path.relpath(face.source, input_dir).split(os.sep)
        out.append(parts[0] if face.main and len(parts) > 1 else None)
    return out


def scores(true_ids, labels):
    """Pairwise precision, recall, F1 and NMI of cluster labels against identities (faces with
    identity None left out; each noise face counts as a cluster of its own)."""
    keep = [i for i, t in enumerate(true_ids) if t is not None]
    if not keep:
        raise FaceNetError('no face to score: the photos must lie in one sub-folder per person')
    truth = np.unique([true_ids[i] for i in keep], return_inverse=True)[1]
    pred = np.asarray(labels)[keep].copy()
    noise = pred == NOISE
    pred[noise] = pred.max() + 1 + np.arange(np.sum(noise))
    table = contingency_matrix(truth, pred, sparse=True)
    pairs = (lambda counts: float(np.sum(counts * (counts - 1)) / 2))
    together = pairs(table.data)
    predicted = pairs(np.asarray(table.sum(axis=0)).ravel())
    same = pairs(np.asarray(table.sum(axis=1)).ravel())
    precision = together / predicted if predicted else 1.0
    recall = together / same if same else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {'faces': len(keep), 'people': int(truth.max() + 1), 'precision': precision, 'recall': recall,
            'f1': f1, 'nmi': float(normalized_mutual_info_score(truth, pred))}
