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

from facenet_tf import files
from facenet_tf.errors import FaceNetError, first_line
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
    from sklearn.svm import SVC  # imported here: the tools answer --help without scikit-learn
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
    unpickled by facenet_tf.safe_pickle (only an SVC, NumPy arrays and builtins, memory bounded by the
    file's size), then its content is checked (check_content) before any of it is used."""
    if not os.path.exists(path):
        raise FaceNetError('classifier file not found: %s (write one with mode TRAIN)' % path)
    files.require_regular_file(path, 'a classifier file is a .pkl written by mode TRAIN')
    from facenet_tf import safe_pickle  # scikit-learn loads here, not before --help
    if os.path.getsize(path) > safe_pickle.MAX_FILE_BYTES:
        raise FaceNetError('%s: %d bytes, more than a classifier file holds (%d)'
                           % (path, os.path.getsize(path), safe_pickle.MAX_FILE_BYTES))
    try:
        with open(path, 'rb') as f:
            content = safe_pickle.load(f)
    except safe_pickle.RefusedClass as e:
        raise FaceNetError('%s: %s' % (path, e))
    except (OSError, MemoryError):
        raise
    except Exception as e:  # pickle raises many types on foreign or damaged files
        raise FaceNetError('%s is not a classifier file: %s' % (path, first_line(e)))
    if not (isinstance(content, tuple) and len(content) == 2):
        raise FaceNetError('%s is not a classifier file (expected a pickle of (model, class_names), got %s)'
                           % (path, type(content).__name__))
    model, class_names = content
    check_content(path, model, class_names)
    return model, list(class_names)


def _array(path, model, name, dtype, ndim):
    """The model's array attribute `name` of that dtype (an integer one for dtype int) and rank."""
    value = getattr(model, name, None)
    if not (isinstance(value, np.ndarray) and value.ndim == ndim and value.flags.c_contiguous
            and (value.dtype.kind == 'i' if dtype is int else value.dtype == dtype)):
        raise FaceNetError('%s: the classifier\'s %s is not a %d-D %s array in C order'
                           % (path, name, ndim, 'integer' if dtype is int else np.dtype(dtype)))
    if value.dtype.kind == 'f' and not np.all(np.isfinite(value)):
        raise FaceNetError('%s: the classifier\'s %s holds NaN or infinite values' % (path, name))
    return value


def _expect(path, ok, what):
    if not ok:
        raise FaceNetError('%s: %s' % (path, what))


def check_content(path, model, class_names):
    """Refuse (one line naming `path`) a classifier whose parts do not fit together: the SVM library
    indexes its arrays by the sizes stored beside them, so a file that disagrees with itself could
    read out of bounds instead of raising."""
    from sklearn.svm import SVC
    _expect(path, type(model) is SVC, 'the model is a %s, not the SVC that mode TRAIN writes' % type(model).__name__)
    _expect(path, isinstance(class_names, (list, tuple)) and all(type(c) is str for c in class_names),
            'the class names are not a list of strings')
    _expect(path, len(class_names) >= 2, 'a classifier needs at least two classes, the file names %d'
            % len(class_names))
    params = model.__dict__
    _expect(path, params.get('kernel') in ('linear', 'poly', 'rbf', 'sigmoid'), 'unknown SVC kernel %r'
            % (params.get('kernel'),))
    _expect(path, params.get('_sparse') is False and params.get('probability') is True
            and params.get('decision_function_shape') in ('ovr', 'ovo') and type(params.get('break_ties')) is bool,
            'the SVC was not fitted with probabilities on dense embeddings')
    _expect(path, all(type(params.get(k)) in (int, float, np.float64) and np.isfinite(params.get(k))
                      for k in ('_gamma', 'coef0', 'cache_size'))
            and type(params.get('degree')) is int and 0 <= params['degree'] <= 100,
            'the SVC\'s kernel parameters are not numbers')
    dim = params.get('n_features_in_')
    _expect(path, type(dim) is int and dim >= 1, 'the classifier has no embedding size')
    shape_fit = params.get('shape_fit_')
    _expect(path, isinstance(shape_fit, tuple) and len(shape_fit) == 2 and shape_fit[1] == dim
            and all(type(n) is int for n in shape_fit), 'the SVC was fitted on data of another shape than '
            'its %d-D embeddings' % dim)
    vectors = _array(path, model, 'support_vectors_', np.float64, 2)
    n_sv = vectors.shape[0]
    _expect(path, vectors.shape[1] == dim and n_sv >= 1,
            'support vectors of shape %s for %d-D embeddings' % (vectors.shape, dim))
    classes = _array(path, model, 'classes_', int, 1)
    n_class, n_pairs = len(classes), len(classes) * (len(classes) - 1) // 2
    _expect(path, n_class >= 2, 'a classifier needs at least two classes, the model has %d' % n_class)
    _expect(path, np.all((classes >= 0) & (classes < len(class_names))) and len(np.unique(classes)) == n_class,
            'the model\'s classes are not distinct indexes of its %d class names' % len(class_names))
    n_support = _array(path, model, '_n_support', np.int32, 1)
    _expect(path, n_support.shape == (n_class,) and np.all(n_support >= 0) and int(n_support.sum()) == n_sv,
            'support vector counts %s do not add up to %d support vectors of %d classes'
            % (n_support.tolist()[:10], n_sv, n_class))
    _expect(path, _array(path, model, 'support_', np.int32, 1).shape == (n_sv,),
            'support_ does not match the support vectors')
    for name in ('dual_coef_', '_dual_coef_'):
        _expect(path, _array(path, model, name, np.float64, 2).shape == (n_class - 1, n_sv),
                '%s is not of shape (%d, %d)' % (name, n_class - 1, n_sv))
    for name in ('intercept_', '_intercept_', '_probA', '_probB'):
        _expect(path, _array(path, model, name, np.float64, 1).shape == (n_pairs,),
                '%s does not have %d entries (one per pair of classes)' % (name, n_pairs))
    _expect(path, _array(path, model, 'class_weight_', np.float64, 1).shape == (n_class,),
            'class_weight_ does not have %d entries' % n_class)
    if params.get('facenet_embeddings_') is not None:
        emb = _array(path, model, 'facenet_embeddings_', np.float32, 2)
        labels = _array(path, model, 'facenet_labels_', int, 1)
        _expect(path, emb.shape[1] == dim and len(emb) == len(labels) and len(emb) >= 1
                and np.all(np.isin(labels, classes)),
                'the training embeddings kept in the file do not match the classifier')
    try:
        predict(model, class_names, np.zeros((1, dim), np.float32))
    except Exception as e:
        raise FaceNetError('%s: the classifier cannot predict: %s' % (path, first_line(e)))


def check_embedding_size(path, model, embeddings):
    """Refuse embeddings of another size than the classifier was trained on (another model)."""
    size = np.shape(embeddings)[1] if np.ndim(embeddings) == 2 else None
    if size != model.n_features_in_:
        raise FaceNetError('%s takes %d-D embeddings, got %s-D ones (made with another model?)'
                           % (path, model.n_features_in_, size))


def training_embeddings(model):
    """The training embeddings kept on the model, or a one-line error for a classic file."""
    train_emb = getattr(model, 'facenet_embeddings_', None)
    if train_emb is None:
        raise FaceNetError('this classifier file holds no training embeddings (written by the classic '
                        'tool): train it again to use --unknown_threshold')
    return train_emb


def nearest_known(known, labels, embeddings, chunk=1024, block=16384):
    """(L2 distance from each embedding to the nearest row of `known`, that row's label). Embeddings
    are taken `chunk` at a time against `block` rows of `known` at a time, so the working memory is
    at most chunk x block distances (64 MiB) whatever the size of `known`."""
    known = np.asarray(known, dtype=np.float32)
    emb = np.asarray(embeddings, dtype=np.float32)
    known_sq = np.sum(known ** 2, axis=1)
    dist = np.full(len(emb), np.inf, np.float32)
    nearest = np.zeros(len(emb), np.int64)
    for start in range(0, len(emb), chunk):
        part = emb[start:start + chunk]
        part_sq = np.sum(part ** 2, axis=1)[:, None]
        best = dist[start:start + chunk]
        best_index = nearest[start:start + chunk]
        for first in range(0, len(known), block):
            sq = part_sq + known_sq[None, first:first + block] - 2.0 * part @ known[first:first + block].T
            idx = np.argmin(sq, axis=1)
            value = sq[np.arange(len(part)), idx]
            better = value < best    # ties keep the earlier row, as one argmin over all rows would
            best[better] = value[better]
            best_index[better] = first + idx[better]
    return np.sqrt(np.maximum(dist, 0.0)), np.asarray(labels)[nearest]


def nearest_distances(model, embeddings, chunk=1024):
    """L2 distance from each embedding to the nearest training embedding, and that embedding's label."""
    return nearest_known(training_embeddings(model), model.facenet_labels_, embeddings, chunk)


def predict(model, class_names, embeddings, unknown_threshold=None):
    """(names, probabilities, distances): each face's best class name and its probability; with
    unknown_threshold, faces whose nearest training embedding is farther than it are named UNKNOWN
    (distances is None without a threshold)."""
    check_embedding_size('the classifier', model, embeddings)
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
