"""The face service: detect -> crop -> standardise -> embed, shared by the tools and the Python API.

`FacePipeline` holds a detector (align.detect_face.MTCNN) and a model: a session with a model
loaded or a runtimes.Embedder (any model file, .tflite and .onnx too); it detects the faces of a batch
of images with one detector call, crops each as the aligner does (box grown by margin/2 per side,
clipped, PIL bilinear resize), standardises the crops as the model expects and embeds them in batches. Either part may be None when only the other is used (compare.py detects
with one and embeds with the other; a gallery of aligned crops needs no detector).

One face per image (`one_face`): FIRST is the detector's first box (compare.py's classic choice);
CENTRAL is the largest and most central face (align_dataset_mtcnn's classic choice, aligner.choose_face).
"""
import time

import numpy as np

from facenet_tf.align import aligner
from facenet_tf import images as image_lib

FIRST, CENTRAL = 'first', 'central'


def standardizer(fixed_standardization):
    """The standardisation the model was trained with: fixed (x - 127.5) / 128 or per-image prewhiten."""
    return image_lib.fixed_standardize if fixed_standardization else image_lib.prewhiten


class Timer(object):
    """Seconds accumulated per named part of the work."""

    def __init__(self):
        self.seconds = {}

    def add(self, part, seconds):
        self.seconds[part] = self.seconds.get(part, 0.0) + seconds


def embed_faces(sess, faces, batch_size):
    """Embeddings of standardised face crops [N, size, size, 3] through the model in `sess` (a
    TensorFlow session holding a loaded model, or a runtimes.Embedder), in batches."""
    from facenet_tf.runtimes import as_embedder   # TensorFlow: imported once a model runs
    runner = as_embedder(sess)
    out = [runner.embed(faces[start:start + batch_size]) for start in range(0, len(faces), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, runner.embedding_size or 0), np.float32)


def one_face(boxes, image_shape, choice=CENTRAL):
    """Index of the face kept when one face per image is wanted (boxes [N>0, 4+])."""
    return 0 if choice == FIRST else aligner.choose_face(boxes, image_shape)


class FacePipeline(object):
    """Detect every face of a batch of images (one detector call), crop and standardise them as the
    aligner does, and embed all crops in batches; the Timer gets 'detection' and 'embedding'."""

    def __init__(self, sess, detector, image_size=160, margin=44, fixed_standardization=False,
                 max_detect_side=0, batch_size=90, timer=None):
        self.sess, self.detector = sess, detector
        self.image_size, self.margin = image_size, margin
        self.standardize = standardizer(fixed_standardization)
        self.max_detect_side, self.batch_size = max_detect_side, batch_size
        self.timer = timer or Timer()

    def detect(self, images):
        """(boxes [N, 5], points [10, N]) per image."""
        t0 = time.perf_counter()
        found = aligner.detect_faces(self.detector, images, self.max_detect_side)
        self.timer.add('detection', time.perf_counter() - t0)
        return found

    def crop(self, image, box):
        """(standardised float32 crop, int box) of one detection, or (None, box) off the image."""
        face, bb = aligner.crop_face(image, box[0:4], self.image_size, self.margin)
        return (None if face is None else self.standardize(face).astype(np.float32)), bb

    def embed(self, crops):
        """Embeddings [N, D] of standardised crops (a list or an array), batch_size at a time."""
        t0 = time.perf_counter()
        if len(crops) and not isinstance(crops, np.ndarray):
            crops = np.stack(crops)
        elif not len(crops):
            crops = np.zeros((0, self.image_size, self.image_size, 3), np.float32)
        emb = embed_faces(self.sess, crops, self.batch_size)
        self.timer.add('embedding', time.perf_counter() - t0)
        return emb

    def embed_crops(self, crops):
        """Embeddings [N, D] of uint8 crops, standardised here as the model expects."""
        return self.embed([self.standardize(c).astype(np.float32) for c in crops])

    def aligned(self, images, keep_all=True, choice=CENTRAL):
        """Per image, a list of face dicts: detection box [4] (float), score, landmarks [5, 2] (x, y),
        crop (uint8 image_size x image_size x 3), crop_box (int, margin added and clipped), index
        (of the detection) and main (whether it is the one-face choice). keep_all False: at most the
        one face of `choice` per image (an empty list when it has no face or its crop is empty)."""
        out = []
        for image, (boxes, points) in zip(images, self.detect(images) if len(images) else []):
            main = one_face(boxes, image.shape, choice) if boxes.shape[0] else -1
            found = []
            for k in (range(boxes.shape[0]) if keep_all else [main] if main >= 0 else []):
                crop, bb = aligner.crop_face(image, boxes[k, 0:4], self.image_size, self.margin)
                if crop is None:
                    continue
                found.append({'box': boxes[k, 0:4], 'score': float(boxes[k, 4]),
                              'landmarks': np.stack([points[0:5, k], points[5:10, k]], axis=1),
                              'crop': crop, 'crop_box': bb, 'index': k, 'main': k == main})
            out.append(found)
        return out

    def faces(self, images):
        """Per image, a list of face dicts (box, score, landmarks, embedding) for every detected face."""
        per_image = self.aligned(images)
        flat = [face for faces in per_image for face in faces]
        emb = self.embed_crops([face['crop'] for face in flat])
        for k, face in enumerate(flat):
            face['embedding'] = emb[k]
            for key in ('crop', 'crop_box', 'index', 'main'):
                del face[key]
        return per_image
