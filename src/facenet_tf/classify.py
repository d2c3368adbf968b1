"""Face classification on embeddings: the classic linear SVM with probabilities, plus an "unknown"
answer for faces far from every known person.

Classifier files are the classic pickle of `(model, class_names)`, so files of the classic tool
load here and files written here load in the classic tool. For the unknown answer the training
embeddings are kept as attributes of the model object (`facenet_embeddings_`, `facenet_labels_`),
which the classic tool ignores.

"Far" is the Euclidean (L2, not squared) distance from a face's embedding to the nearest training
embedding of any class: the same distance compare.py prints, so a threshold can be read off its
distance matrix (on L2-normalised embeddings it lies in [0, 2]).
"""
import os
import pickle
import warnings

import numpy as np
from sklearn.svm import SVC

from facenet_tf import safe_pickle
from facenet_tf.errors import FaceNetError
from facenet_tf.files import atomic_open
from facenet_tf.dataset import ImageClass

UNKNOWN = 'unknown'


def split_dataset(dataset, min_nrof_images_per_class, nrof_train_images_per_class):
    """Classic split: drop classes with fewer than min_nrof_images_per_class images, shuffle each
    remaining class's paths (np.random) and take the first nrof_train_images_per_class for
    training, the rest for test."""
    train_set, test_set = [], []
    for cls in dataset:
        paths = list(cls.image_paths)
        if len(paths) >= min_nrof_images_per_class:
            np.random.shuffle(paths)
            train_set.append(ImageClass(cls.name, paths[:nrof_train_images_per_class]))
            test_set.append(ImageClass(cls.name, paths[nrof_train_images_per_class:]))
    return train_set, test_set


def display_name(class_folder_name):
    """Class names as the classic tool stores them: folder name with '_' as spaces."""
    return class_folder_name.replace('_', ' ')


def train(embeddings, labels):
    """Fit `SVC(kernel='linear', probability=True)` and keep the training embeddings on it."""
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        raise FaceNetError('training needs at least two classes with images, got %d' % len(np.unique(labels)))
    model = SVC(kernel='linear', probability=True)
    with warnings.catch_warnings():  # newer scikit-learn announces the end of `probability`
        warnings.filterwarnings('ignore', message='.*probability.*', category=FutureWarning)
        model.fit(embeddings, labels)
    model.facenet_embeddings_ = np.asarray(embeddings, dtype=np.float32)
    model.facenet_labels_ = labels.astype(np.int64)
    return model


def save(path, model, class_names):
    """Pickle (model, class_names) to `path`, through a temporary file."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FaceNetError('folder of the classifier file not found: %s' % folder)
    with atomic_open(path, 'wb') as f:
        pickle.dump((model, list(class_names)), f)


def load(path):
    """(model, class_names) of a classifier file (classic or ours), with one-line errors. The file is
    unpickled by facenet_tf.safe_pickle: a file naming anything but scikit-learn estimators, NumPy
    arrays and builtins is refused before any of it runs."""
    if not os.path.isfile(path):
        raise FaceNetError('classifier file not found: %s (write one with mode TRAIN)' % path)
    try:
        with open(path, 'rb') as f:
            content = safe_pickle.load(f)
    except safe_pickle.RefusedClass as e:
        raise FaceNetError('%s: %s' % (path, e))
    except Exception as e:  # pickle raises many types on foreign or damaged files
        raise FaceNetError('%s is not a classifier file: %s' % (path, str(e).splitlines()[0] if str(e)
                                                              else type(e).__name__))
    if not (isinstance(content, tuple) and len(content) == 2 and hasattr(content[0], 'predict_proba')):
        raise FaceNetError('%s is not a classifier file (expected a pickle of (model, class_names))' % path)
    model, class_names = content
    return model, list(class_names)


def training_embeddings(model):
    """The training embeddings kept on the model, or a one-line error for a classic file."""
    train_emb = getattr(model, 'facenet_embeddings_', None)
    if train_emb is None:
        raise FaceNetError('this classifier file holds no training embeddings (written by the classic '
                        'tool): train it again to use --unknown_threshold')
    return train_emb


def nearest_known(known, labels, embeddings, chunk=1024):
    """(L2 distance from each embedding to the nearest row of `known`, that row's label), in chunks."""
    known = np.asarray(known, dtype=np.float32)
    emb = np.asarray(embeddings, dtype=np.float32)
    known_sq = np.sum(known ** 2, axis=1)
    dist = np.zeros(len(emb), np.float32)
    nearest = np.zeros(len(emb), np.int64)
    for start in range(0, len(emb), chunk):
        part = emb[start:start + chunk]
        sq = np.sum(part ** 2, axis=1)[:, None] + known_sq[None, :] - 2.0 * part @ known.T
        idx = np.argmin(sq, axis=1)
        nearest[start:start + chunk] = idx
        dist[start:start + chunk] = np.sqrt(np.maximum(sq[np.arange(len(part)), idx], 0.0))
    return dist, np.asarray(labels)[nearest]


def nearest_distances(model, embeddings, chunk=1024):
    """L2 distance from each embedding to the nearest training embedding, and that embedding's label."""
    return nearest_known(training_embeddings(model), model.facenet_labels_, embeddings, chunk)


def predict(model, class_names, embeddings, unknown_threshold=None):
    """(names, probabilities, distances): each face's best class name and its probability; with
    unknown_threshold, faces whose nearest training embedding is farther than it are named UNKNOWN
    (distances is None without a threshold)."""
    predictions = model.predict_proba(embeddings)
    best = np.argmax(predictions, axis=1)
    probabilities = predictions[np.arange(len(best)), best]
    classes = np.asarray(model.classes_)[best]
    names = [class_names[int(c)] for c in classes]
    distances = None
    if unknown_threshold is not None:
        distances, _ = nearest_distances(model, embeddings)
        names = [UNKNOWN if d > unknown_threshold else n for n, d in zip(names, distances)]
    return names, probabilities, distances


def accuracy(predicted_names, true_names, class_names):
    """Share of faces named right; a face of a person the classifier does not know counts as right
    when it is named UNKNOWN."""
    known = set(class_names)
    right = [p == t or (p == UNKNOWN and t not in known) for p, t in zip(predicted_names, true_names)]
    return float(np.mean(right)) if right else 0.0
