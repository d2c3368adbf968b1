"""Naming faces for recognize.py: `GalleryNamer`, the nearest face of a gallery folder (one sub-folder
of photos or aligned crops per person, embedded once and cached beside the gallery as
GALLERY_CACHE, a cache read with its sizes checked first), or `ClassifierNamer`, a classifier.py file
(read by the restricted unpickler). A face farther than the unknown threshold (L2, as compare.py
prints) from every known face is UNKNOWN."""
import hashlib
import json
import os
import stat
import sys

import numpy as np

from facenet_tf.align import aligner
from facenet_tf import classify, dataset, files
from facenet_tf import images as image_lib
from facenet_tf.errors import FaceNetError

GALLERY_CACHE = '.facenet_gallery.npz'
UNKNOWN = classify.UNKNOWN


class GalleryNamer(object):
    """Names faces by the nearest gallery face: that person, or UNKNOWN beyond the threshold."""

    def __init__(self, names, embeddings, labels, unknown_threshold):
        self.names, self.embeddings, self.labels = list(names), embeddings, np.asarray(labels)
        self.unknown_threshold = unknown_threshold

    def __call__(self, emb):
        """[(name, distance, probability None)] for each embedding."""
        if not len(emb):
            return []
        dist, labels = classify.nearest_known(self.embeddings, self.labels, emb)
        return [(UNKNOWN if d > self.unknown_threshold else self.names[int(lab)], float(d), None)
                for d, lab in zip(dist, labels)]


class ClassifierNamer(object):
    """Names faces with a classifier.py file: the best class and its probability; with the training
    embeddings kept in the file, UNKNOWN beyond the threshold (a classic file has none: no unknown).
    The file is read by classify.load (the restricted unpickler); a file whose classes or embedding
    size do not fit is refused with one line naming it."""

    def __init__(self, path, unknown_threshold, note):
        self.path = path
        self.model, self.class_names = classify.load(path)
        classes = np.asarray(getattr(self.model, 'classes_', []))
        if classes.dtype.kind not in 'iu' or classes.size == 0 or classes.min() < 0 or \
                classes.max() >= len(self.class_names):
            raise FaceNetError('%s: its classes are not indices into its %d class names'
                               % (path, len(self.class_names)))
        self.unknown_threshold = unknown_threshold
        if getattr(self.model, 'facenet_embeddings_', None) is None:
            note('%s holds no training embeddings (a classic file): every face gets its best class, '
                 'none is unknown' % path)
            self.unknown_threshold = None

    def __call__(self, emb):
        if not len(emb):
            return []
        expected = getattr(self.model, 'n_features_in_', emb.shape[1])
        if expected != emb.shape[1]:
            raise FaceNetError('%s: the classifier takes %s-D embeddings, the model gives %d-D'
                               % (self.path, expected, emb.shape[1]))
        try:
            names, probabilities, distances = classify.predict(self.model, self.class_names, emb,
                                                               self.unknown_threshold)
        except (ValueError, TypeError, IndexError, AttributeError) as e:
            raise FaceNetError('%s: cannot name faces with this classifier (%s)'
                               % (self.path, str(e).splitlines()[0] if str(e) else type(e).__name__))
        return [(n, None if distances is None else float(distances[i]), float(probabilities[i]))
                for i, n in enumerate(names)]


def _gallery_key(gallery_dir, people, model, settings):
    """A hash of everything the gallery's embeddings depend on: the model file(s), the crop and
    standardisation settings, and every image's path, size and modification time."""
    h = hashlib.sha1()
    model = os.path.abspath(os.path.expanduser(model))
    model_files = [model] if os.path.isfile(model) else sorted(
        os.path.join(model, f) for f in os.listdir(model))
    for f in model_files:
        st = os.stat(f)
        h.update(('%s %d %d\n' % (f, st.st_size, st.st_mtime_ns)).encode())
    h.update(json.dumps(settings, sort_keys=True).encode())
    for person in people:
        for path in person.image_paths:
            st = os.stat(path)
            h.update(('%s %d %d\n' % (os.path.relpath(path, gallery_dir), st.st_size, st.st_mtime_ns)).encode())
    return h.hexdigest()


def gallery_crop(pipeline, image):
    """The crop of a gallery image: the image itself when it is already image_size x image_size (an
    aligned crop), else the face the aligner would choose (largest, central); None without a face."""
    size = pipeline.image_size
    if image.shape[0] == size and image.shape[1] == size:
        return pipeline.standardize(image).astype(np.float32)
    boxes, _ = pipeline.detect([image])[0]
    if boxes.shape[0] == 0:
        return None
    crop, _ = pipeline.crop(image, boxes[aligner.choose_face(boxes, image.shape)])
    return crop


def gallery_people(gallery_dir):
    """The people of a gallery folder: one ImageClass per sub-folder (sorted, hidden ones left out)
    with its files (regular files only: a FIFO is never opened); a one-line error when there is none
    with images. Listed here rather than with dataset.get_dataset, which splits paths at ':'. Files
    that are not images get a note each on stderr and a count (dataset.note_skipped)."""
    if not os.path.isdir(gallery_dir):
        raise FaceNetError('%s: the gallery folder does not exist' % gallery_dir)
    people, skipped = [], []
    for name in sorted(os.listdir(gallery_dir)):
        folder = os.path.join(gallery_dir, name)
        if name.startswith('.') or not os.path.isdir(folder):
            continue
        paths = dataset.get_image_paths(folder, skipped)   # regular files only (os.path.isfile)
        if paths:
            people.append(dataset.ImageClass(name, paths))
    dataset.note_skipped(skipped, lambda line: sys.stderr.write(line + '\n'))
    if not people:
        raise FaceNetError('%s: the gallery has no person folder with images (one sub-folder per person)'
                           % gallery_dir)
    return people


CACHE_BYTES_PER_IMAGE = 32 * 1024   # room for one embedding of up to 4096 float32 values and its label


def _read_cache(cache, key, nrof_people, nrof_images):
    """(embeddings, labels) of the gallery cache when it is a regular file (not a link) holding
    arrays for `key` that fit the gallery; else None. Its declared sizes are checked before any
    array is read, so a crafted cache cannot take memory beyond CACHE_BYTES_PER_IMAGE per image."""
    import zipfile
    try:
        if not stat.S_ISREG(os.lstat(cache).st_mode):
            return None
        with zipfile.ZipFile(cache) as z:
            if sorted(i.filename for i in z.infolist()) != ['embeddings.npy', 'key.npy', 'labels.npy'] or \
                    sum(i.file_size for i in z.infolist()) > (nrof_images + 1) * CACHE_BYTES_PER_IMAGE:
                return None
        with np.load(cache, allow_pickle=False) as data:
            if str(data['key']) != key:
                return None
            emb, labels = data['embeddings'], data['labels']
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    if emb.ndim != 2 or emb.dtype.kind != 'f' or labels.ndim != 1 or labels.dtype.kind not in 'iu' or \
            len(labels) != len(emb) or not len(labels) or labels.min() < 0 or labels.max() >= nrof_people:
        return None
    return emb, labels


def load_gallery(gallery_dir, pipeline, model, unknown_threshold, note, people=None, precision='fp32'):
    """A GalleryNamer of a folder with one sub-folder of photos or crops per person (`people`: its
    gallery_people, listed again when not given). The embeddings are cached in
    gallery_dir/.facenet_gallery.npz and reused while the model, the settings (and `precision`, what
    computes the embeddings: runtimes.Embedder.arithmetic) and the images are unchanged; a cache path that is a link
    or no regular file is neither read nor replaced."""
    gallery_dir = os.path.expanduser(gallery_dir)
    people = people if people is not None else gallery_people(gallery_dir)
    settings = {'image_size': pipeline.image_size, 'margin': pipeline.margin,
                'standardize': pipeline.standardize.__name__, 'max_detect_side': pipeline.max_detect_side,
                'precision': precision}
    key = _gallery_key(gallery_dir, people, model, settings)
    cache = os.path.join(gallery_dir, GALLERY_CACHE)
    names = [classify.display_name(p.name) for p in people]
    cached = _read_cache(cache, key, len(people), sum(len(p.image_paths) for p in people))
    if cached is not None:
        note('gallery: %d faces of %d people from the cache %s' % (len(cached[1]), len(people), cache))
        return GalleryNamer(names, cached[0], cached[1], unknown_threshold)
    crops, labels, parts = [], [], []
    for label, person in enumerate(people):
        for path in person.image_paths:
            try:
                crop = gallery_crop(pipeline, image_lib.read_rgb(path))
            except image_lib.ImageReadError as e:
                note('gallery: cannot read %s (%s): left out' % (path, e))
                continue
            if crop is None:
                note('gallery: no face in %s: left out' % path)
                continue
            crops.append(crop)
            labels.append(label)
            if len(crops) == pipeline.batch_size:   # crops held: one batch at most
                parts.append(pipeline.embed(crops))
                crops = []
    if crops:
        parts.append(pipeline.embed(crops))
    if not parts:
        raise FaceNetError('%s: no face found in the gallery' % gallery_dir)
    emb = np.concatenate(parts)
    labels = np.asarray(labels, np.int64)
    missing = [names[i] for i in range(len(people)) if i not in set(labels.tolist())]
    if missing:
        note('gallery: no usable face of %s' % ', '.join(missing))
    if os.path.lexists(cache) and not stat.S_ISREG(os.lstat(cache).st_mode):
        note('gallery: %d faces of %d people embedded (cache not written: %s is not a regular file)'
             % (len(labels), len(people), cache))
        return GalleryNamer(names, emb, labels, unknown_threshold)
    try:
        with files.atomic_path(cache) as tmp:
            with open(tmp, 'wb') as f:
                np.savez(f, key=np.array(key), embeddings=emb, labels=labels)
        note('gallery: %d faces of %d people embedded, cached in %s' % (len(labels), len(people), cache))
    except OSError as e:
        note('gallery: %d faces of %d people embedded (cache not written: %s)'
             % (len(labels), len(people), e.strerror or e))
    return GalleryNamer(names, emb, labels, unknown_threshold)
