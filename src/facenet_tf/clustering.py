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
import re
import shutil

import numpy as np

from facenet_tf import dataset, files
from facenet_tf import images as image_lib
from facenet_tf.errors import FaceNetError
from facenet_tf.progress import Progress
from facenet_tf.recognition import folder_images, process_running

NOISE = -1
DEFAULT_EPS = {'dbscan': 0.8, 'agglomerative': 0.9}   # best pairwise F1 of the published model on LFW
NOISE_FOLDER = 'noise'
CROPS_FOLDER = 'crops'
CSV_NAME = 'clusters.csv'
CSV_COLUMNS = ('cluster', 'crop', 'source', 'face', 'main', 'x1', 'y1', 'x2', 'y2', 'score')
UNFINISHED = '.cluster_unfinished'   # in OUTPUT_DIR (holding the writer's process id) until clusters.csv is written
CLUSTER_FOLDER_RE = re.compile(r'^(cluster_\d{3,}|%s)$' % NOISE_FOLDER)


def image_files(input_dir, note=None):
    """Image files under input_dir, recursively, sorted: regular files only (a FIFO or device named
    like an image is never opened), hidden files and folders left out; with `note`, each other file
    gets a note and their count a last one (dataset.note_skipped)."""
    skipped = []
    found = folder_images(input_dir, skipped)
    if note is not None:
        dataset.note_skipped(skipped, note)
    return found


def crop_names(paths, input_dir):
    """{photo path: crop name stem relative to the crops folder}: the photo's folder mirrored, and
    its file name without extension, except where photos of one folder share a stem (`x.jpg`,
    `x.png`: `x_jpg`, `x_png`, dataset.output_stems) so that no crop replaces another."""
    by_folder = {}
    for path in paths:
        by_folder.setdefault(os.path.dirname(path), []).append(path)
    names = {}
    for folder, group in by_folder.items():
        for path, stem in dataset.output_stems(group).items():
            names[path] = os.path.join(os.path.relpath(folder, input_dir), stem)
    return names


class Face(object):
    """One face: its crop file, source photo, index in the photo, whether it is the face the aligner
    would choose there (`main`), box and detection score (None for aligned input)."""

    def __init__(self, crop, source, index, main, box=None, score=None):
        self.crop, self.source, self.index, self.main, self.box, self.score = crop, source, index, main, box, score


def detect_and_embed(pipeline, input_dir, crops_dir, note, batch=8, stream=None):
    """(faces, embeddings) of every face of every photo under input_dir: detected in batches of
    photos by the face service (faces.FacePipeline.aligned), each crop written as a PNG under crops_dir
    (mirroring the photo's folder, named <photo stem>_<k>.png, crop_names), embedded by the service.
    Unreadable photos get a note."""
    import cv2
    paths = image_files(input_dir)
    stems = crop_names(paths, input_dir)
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
        for path, found in zip(kept, pipeline.aligned(images)):
            for face in found:
                out = os.path.normpath(os.path.join(crops_dir, '%s_%d.png' % (stems[path], face['index'])))
                os.makedirs(os.path.dirname(out), exist_ok=True)
                png = cv2.imencode('.png', cv2.cvtColor(face['crop'], cv2.COLOR_RGB2BGR))[1]
                files.write_atomic(out, png.tobytes())
                faces.append(Face(out, path, face['index'], face['main'], face['crop_box'], face['score']))
                crops.append(face['crop'])
        if crops:
            embeddings.append(pipeline.embed_crops(crops))
        progress.update(len(paths[start:start + batch]))
    (stream or progress.stream).write(progress.summary() + '\n')
    dim = embeddings[0].shape[1] if embeddings else 0
    return faces, np.concatenate(embeddings) if embeddings else np.zeros((0, dim), np.float32)


def aligned_faces(input_dir):
    """Faces of a folder of aligned crops: every image file is one face (its own source)."""
    return [Face(path, path, 0, True) for path in image_files(input_dir)]


def readable(faces, note):
    """The faces whose image decodes (aligned input): an unreadable one gets a note and is left out
    instead of stopping the run."""
    kept = []
    for face in faces:
        try:
            image_lib.read_rgb(face.crop)
            kept.append(face)
        except image_lib.ImageReadError as e:
            note('cannot read %s (%s): left out' % (face.crop, e))
    return kept


def cluster(embeddings, method='dbscan', eps=0.8, min_samples=3, n_clusters=None):
    """Cluster labels (0 = the largest cluster, NOISE = -1) of the embeddings.

    dbscan: faces with min_samples faces (itself included) within eps (L2) are cores; clusters are
    the cores joined through eps and the faces within eps of them; the rest is noise.
    agglomerative: average linkage, merging while the mean L2 distance between two groups is below
    eps (or down to n_clusters groups when given); groups smaller than min_samples are noise."""
    from sklearn.cluster import DBSCAN, AgglomerativeClustering  # here: --help answers without it
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


def unfinished_by(output_dir):
    """The process id of the cluster.py run that began writing output_dir and did not finish
    (its marker is there, clusters.csv is not), or None."""
    marker = os.path.join(output_dir, UNFINISHED)
    try:
        if not os.path.isfile(marker) or os.path.islink(marker) or os.path.lexists(os.path.join(output_dir, CSV_NAME)):
            return None
        with open(marker) as f:
            return int(f.read(32).strip() or 0)
    except (OSError, ValueError):
        return None


def begin_output(output_dir):
    """Mark output_dir as being written by this process; a run killed before clusters.csv leaves
    the mark, so that a rerun may take the folder over (take_over)."""
    files.write_atomic(os.path.join(output_dir, UNFINISHED), '%d\n' % os.getpid())


def take_over(output_dir):
    """Clear what a killed run left in its marked output folder: the cluster folders (links or
    copies) and temporary files; the crops are written again under the same names."""
    for name in os.listdir(output_dir):
        if CLUSTER_FOLDER_RE.match(name) and os.path.isdir(os.path.join(output_dir, name)) and \
                not os.path.islink(os.path.join(output_dir, name)):
            shutil.rmtree(os.path.join(output_dir, name))
    for folder, _, names in os.walk(output_dir):
        for name in names:
            match = files.TEMPORARY_RE.match(name)
            if match and not process_running(int(match.group(1))):
                os.remove(os.path.join(folder, name))


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
    if os.path.lexists(os.path.join(output_dir, UNFINISHED)):
        os.remove(os.path.join(output_dir, UNFINISHED))


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
    from sklearn.metrics import normalized_mutual_info_score
    from sklearn.metrics.cluster import contingency_matrix
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
