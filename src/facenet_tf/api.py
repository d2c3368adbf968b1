"""The Python API: `MTCNN` (detection and crops), `FaceNet` (embeddings from any model file) and the
one-call helpers `embed_faces`, `distance` and `same_person` (docs/api.md).

Both objects are the face service (facenet_tf.faces.FacePipeline) behind a small surface: the crops
are the aligner's crops exactly, the embeddings those of the tools for the same crops. Each object
owns its TensorFlow graph and session (close() or a with block frees them); one object may be used
from several threads (TensorFlow sessions run concurrently).
"""
import argparse
import os
import threading

import numpy as np

from facenet_tf import faces as faces_lib
from facenet_tf import images as image_lib
from facenet_tf import pretrained as pretrained_lib
from facenet_tf import tf_setup
from facenet_tf.errors import FaceNetError

DEFAULT_MODEL = '20170512-110547'
DEFAULT_THRESHOLD = pretrained_lib.MODELS[DEFAULT_MODEL]['threshold']
COMPARE_MARGIN = 44   # the helpers crop as compare.py does: margin 44, the detector's first face


def _name(item, k):
    return str(item) if isinstance(item, (str, os.PathLike)) else 'image %d' % k


def read_image(item, k=0):
    """An HxWx3 uint8 RGB array from a path, a PIL image or an array (gray or RGBA reduced to RGB)."""
    if isinstance(item, (str, os.PathLike)):
        try:
            return image_lib.read_rgb(os.fspath(item))
        except image_lib.ImageReadError as e:
            raise FaceNetError('%s: cannot read (%s)' % (item, e))
    if hasattr(item, 'mode') and hasattr(item, 'size'):   # a PIL image
        return image_lib.pil_to_rgb(item)
    arr = np.asarray(item)
    if arr.ndim == 2:
        arr = image_lib.to_rgb(arr)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise FaceNetError('%s: expected an HxWx3 image, got an array of shape %s' % (_name(item, k), arr.shape))
    return image_lib._to_uint8(arr[:, :, :3]) if arr.dtype != np.uint8 else np.ascontiguousarray(arr[:, :, :3])


def _batch(images):
    """(list of items, whether one item was given): a list, tuple or [N, H, W, 3] array is a batch."""
    if isinstance(images, (list, tuple)):
        return list(images), False
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return list(images), False
    return [images], True


class MTCNN(object):
    """Face detection and crops: MTCNN boxes, probabilities and five landmarks; crops of image_size
    pixels with `margin` pixels added around the box (half per side), resized with PIL's bilinear
    filter, as align_dataset_mtcnn writes them. keep_all False: one face per image, `select`
    'central' (largest and most central: align_dataset_mtcnn's choice) or 'first' (compare.py's);
    keep_all True: every face. max_detect_side > 0 detects on a copy of large images reduced to that
    side; threads, gpu_memory_fraction and allow_growth set the detector's session. detector 'onnx' or
    'tflite' runs the same cascade on the exported networks (onnxruntime, TFLite; align.mtcnn_runtimes)."""

    def __init__(self, image_size=160, margin=32, keep_all=False, min_face_size=20, thresholds=(0.6, 0.7, 0.7),
                 factor=0.709, select=faces_lib.CENTRAL, max_detect_side=0, threads=None,
                 gpu_memory_fraction=None, allow_growth=False, detector='tf'):
        if select not in (faces_lib.CENTRAL, faces_lib.FIRST):
            raise FaceNetError('select must be %r or %r, got %r' % (faces_lib.CENTRAL, faces_lib.FIRST, select))
        tf_setup.configure()
        from facenet_tf.align.mtcnn_runtimes import make_detector
        self.keep_all, self.select = keep_all, select
        self.detector = make_detector(detector, minsize=min_face_size, threshold=thresholds, factor=factor,
                                      threads=threads, gpu_memory_fraction=gpu_memory_fraction,
                                      allow_growth=allow_growth)
        self.service = faces_lib.FacePipeline(None, self.detector, image_size, margin,
                                              max_detect_side=max_detect_side)
        self.image_size, self.margin = image_size, margin

    def detect(self, images):
        """(boxes [N, 4] float32 x1 y1 x2 y2, probabilities [N], landmarks [N, 5, 2] x y) of every face
        of an image; a list of them for a batch of images."""
        items, single = _batch(images)
        out = []
        for boxes, points in self.service.detect([read_image(x, k) for k, x in enumerate(items)]):
            landmarks = np.stack([points[0:5].T, points[5:10].T], axis=2) if boxes.shape[0] else np.zeros((0, 5, 2))
            out.append((boxes[:, 0:4].astype(np.float32), boxes[:, 4].astype(np.float32),
                        landmarks.astype(np.float32)))
        return out[0] if single else out

    def faces(self, images, keep_all=None):
        """Per image, the face dicts of the service (box, score, landmarks, crop, crop_box, index, main);
        a list of lists for a batch."""
        items, single = _batch(images)
        keep = self.keep_all if keep_all is None else keep_all
        found = self.service.aligned([read_image(x, k) for k, x in enumerate(items)], keep, self.select)
        return found[0] if single else found

    def align(self, images):
        """The crops (uint8 image_size x image_size x 3): keep_all False, the one face of each image
        (None without a face); keep_all True, [N, size, size, 3] of every face. A list for a batch."""
        items, single = _batch(images)
        size = self.image_size
        out = []
        for found in self.faces(items):
            if self.keep_all:
                out.append(np.stack([f['crop'] for f in found]) if found else np.zeros((0, size, size, 3), np.uint8))
            else:
                out.append(found[0]['crop'] if found else None)
        return out[0] if single else out

    __call__ = align

    def close(self):
        self.detector.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def resolve_model(model):
    """The folder or .pb to load for a model file: a checkpoint folder or .pb as it is, a Keras .h5 or
    facenet-pytorch .pt imported once into the cache (pretrained.imported_folder)."""
    path = os.path.expanduser(os.fspath(model))
    if os.path.isdir(path):
        return path
    if not os.path.exists(path):
        hint = (': a published model by name is FaceNet.pretrained(%r)' % model if model in pretrained_lib.MODELS
                else ' (a checkpoint folder, .pb, Keras .h5 or facenet-pytorch .pt)')
        raise FaceNetError('model not found: %s%s' % (model, hint))
    lower = path.lower()
    if lower.endswith(pretrained_lib.IMPORTED_SUFFIXES):
        return pretrained_lib.imported_folder(path)
    if lower.endswith('.zip'):
        raise FaceNetError('%s: unzip the checkpoint first and give its folder' % model)
    if not lower.endswith(('.pb', '.tflite', '.onnx')):
        raise FaceNetError('%s: not a model file (a checkpoint folder, .pb, .tflite, .onnx, Keras .h5 or '
                           'facenet-pytorch .pt)' % model)
    return path


class FaceNet(object):
    """Embeddings of aligned face crops with any model file (see resolve_model): L2-normalised
    float32 [N, embedding_size], batch_size crops per network call, standardised as the model was
    trained (prewhiten, or fixed (x - 127.5) / 128 with fixed_standardization). `threshold` is the
    L2 distance below which same_person says yes, or a threshold file of facenet-calibrate (what it
    stands for in `threshold_source`); precision 'fp32' or 'bf16'; threads (0: all
    cores), gpu_memory_fraction and allow_growth set the session; backend 'onnx' runs a checkpoint
    folder or .pb by onnxruntime, converted once into the cache (fp32; runtimes.open_model)."""

    def __init__(self, model, batch_size=100, fixed_standardization=False, threshold=DEFAULT_THRESHOLD,
                 precision='fp32', threads=0, gpu_memory_fraction=None, allow_growth=False, backend='tf'):
        tf_setup.configure()
        from facenet_tf.runtimes import open_model
        self.model, self.path = model, resolve_model(model)
        self.threshold, self.threshold_source = threshold_value(threshold)
        self.batch_size = batch_size
        settings = argparse.Namespace(precision=precision, intra_op_threads=threads, backend=backend,
                                      gpu_memory_fraction=gpu_memory_fraction, allow_growth=allow_growth)
        self.sess = open_model(self.path, settings)   # the model's runner (runtimes.Embedder): any model file
        self.image_size = self.sess.image_size or 160
        self.embedding_size = self.sess.embedding_size
        self.service = faces_lib.FacePipeline(self.sess, None, self.image_size,
                                              fixed_standardization=fixed_standardization, batch_size=batch_size)

    @classmethod
    def pretrained(cls, name=DEFAULT_MODEL, path=None, **options):
        """A published model by name (pretrained.MODELS), fetched, checked and imported once into the
        cache; the 2018 models load from `path` (see pretrained.model_folder)."""
        entry = pretrained_lib.info(name)
        options.setdefault('fixed_standardization', entry['fixed_standardization'])
        if 'threshold' in entry:
            options.setdefault('threshold', entry['threshold'])
        return cls(pretrained_lib.model_folder(name, path), **options)

    def _crop(self, item, k):
        crop = read_image(item, k) if not isinstance(item, np.ndarray) or item.dtype == np.uint8 else np.asarray(item)
        if crop.ndim != 3 or crop.shape != (self.image_size, self.image_size, 3):
            raise FaceNetError('%s: an aligned crop must be %dx%dx3, got %s (align photos with MTCNN first)'
                               % (_name(item, k), self.image_size, self.image_size, crop.shape))
        return crop

    def embed(self, crops, standardized=False):
        """Embeddings [N, D] of aligned crops: arrays (uint8, or float pixel values 0-255), PIL images
        or paths of aligned images, one or a list or an [N, H, W, 3] array; `standardized` True feeds
        float crops as they are. Read batch_size at a time, so memory stays bounded."""
        items, _ = _batch(crops)
        out = []
        for start in range(0, len(items), self.batch_size):
            chunk = [self._crop(x, start + k) for k, x in enumerate(items[start:start + self.batch_size])]
            if standardized:
                emb = self.service.embed(np.stack(chunk).astype(np.float32))
            else:
                emb = self.service.embed([self.service.standardize(c).astype(np.float32) for c in chunk])
            out.append(emb)
        emb = np.concatenate(out) if out else np.zeros((0, self.embedding_size), np.float32)
        norm = np.linalg.norm(emb, axis=1, keepdims=True)
        return (emb / np.maximum(norm, 1e-10)).astype(np.float32)

    def close(self):
        self.sess.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


_defaults, _defaults_lock = {}, threading.Lock()


def default_model():
    """The published model 20170512-110547 (FaceNet.pretrained), made once per process."""
    with _defaults_lock:
        if 'model' not in _defaults:
            _defaults['model'] = FaceNet.pretrained(DEFAULT_MODEL)
        return _defaults['model']


def default_detector():
    """The helpers' detector, made once per process: compare.py's crops (160 px, margin 44, first face)."""
    with _defaults_lock:
        if 'detector' not in _defaults:
            _defaults['detector'] = MTCNN(margin=COMPARE_MARGIN, select=faces_lib.FIRST)
        return _defaults['detector']


def embed_faces(photo, model=None, detector=None):
    """(boxes [N, 4], embeddings [N, D]) of every face of a photo (path, PIL image or array)."""
    model, detector = model or default_model(), detector or default_detector()
    found = detector.faces(photo, keep_all=True)
    boxes = np.array([f['box'] for f in found], np.float32).reshape(-1, 4)
    return boxes, model.embed([f['crop'] for f in found])


def _main_embedding(photo, model, detector):
    found = detector.faces(photo, keep_all=False)
    if not found:
        raise FaceNetError('%s: no face detected' % _name(photo, 0))
    return model.embed(found[0]['crop'])[0]


def distance(photo_a, photo_b, model=None, detector=None):
    """L2 distance between the embeddings of the main face of each photo (the number compare.py
    prints for them with the default detector); FaceNetError when a photo has no face."""
    model, detector = model or default_model(), detector or default_detector()
    a, b = _main_embedding(photo_a, model, detector), _main_embedding(photo_b, model, detector)
    return float(np.sqrt(np.sum(np.square(a - b))))


def same_person(photo_a, photo_b, threshold=None, model=None, detector=None):
    """Whether the main faces of two photos are closer than `threshold`, an L2 distance or a threshold
    file (default: the model's, 1.1 for the published model: its LFW verification threshold)."""
    model = model or default_model()
    limit = model.threshold if threshold is None else threshold_value(threshold)[0]
    return distance(photo_a, photo_b, model, detector) < limit


def threshold_value(threshold):
    """(L2 threshold, what it stands for) of a number or of a threshold file (facenet-calibrate)."""
    if isinstance(threshold, (str, os.PathLike)):
        from facenet_tf import operating_points
        found = operating_points.read_threshold_file(threshold)
        return operating_points.l2_threshold(found), operating_points.describe(found)
    return float(threshold), 'threshold %g (L2 distance)' % float(threshold)


def verification_rates(embeddings1, embeddings2, issame, fars=(1e-2, 1e-3, 1e-4), nrof_folds=10):
    """Per target FAR, a dict: far, threshold (L2 distance), tar (all pairs), tar_folds_mean and
    tar_folds_std (each fold at the other folds' threshold), held_out_far, ci95 of the threshold (order
    statistics),
    nrof_impostor and meaningful (False below 1 / nrof_impostor); docs/thresholds.md."""
    from facenet_tf import operating_points
    e1, e2 = np.asarray(embeddings1, np.float64), np.asarray(embeddings2, np.float64)
    if e1.shape != e2.shape or e1.ndim != 2:
        raise FaceNetError('embeddings1 and embeddings2 must be [N, D] arrays of one shape, got %s and %s'
                           % (e1.shape, e2.shape))
    dist = np.sqrt(np.sum(np.square(e1 - e2), axis=1))
    return [dict(far=p.far, threshold=p.threshold, tar=p.tar, tar_folds_mean=p.tar_mean, tar_folds_std=p.tar_std,
                 held_out_far=p.held_out_far, ci95=p.ci95, nrof_impostor=p.nrof_impostor, meaningful=p.meaningful)
            for p in operating_points.operating_points(dist, issame, fars, nrof_folds=nrof_folds)]
