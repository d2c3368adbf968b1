"""Turning detections into face crops, as the classic alignment tool does (reused by compare.py).

- `choose_face`: the one face kept when only one is wanted (large and central);
- `crop_face`: box grown by margin/2 per side, clipped, resized with PIL's bilinear filter;
- `align_face`: five-point similarity alignment onto the template (see landmarks);
- `detect_faces` / `prepare`: detection on the full image, as the classic tools; with max_side > 0
  (`--max_detect_side`), images longer than that are detected on a reduced copy, boxes mapped back.
"""
import argparse

import numpy as np
from PIL import Image

from facenet_tf.align.landmarks import align_to_template, face_points
from facenet_tf.align.mtcnn_boxes import imresample

MAX_DETECT_SIDE = 0  # default max_side: 0 = detect on the full image, as the classic tools
DETECTORS = ('tf', 'onnx', 'tflite')  # --detector: the networks' runtime (align.mtcnn_runtimes)


def choose_face(boxes, image_shape):
    """Index of the face with the largest area minus twice its squared offset from the image centre."""
    det = np.asarray(boxes)[:, 0:4]
    if det.shape[0] == 1:
        return 0
    size = (det[:, 2] - det[:, 0]) * (det[:, 3] - det[:, 1])
    centre = np.asarray(image_shape[0:2], dtype=np.float64) / 2
    offsets = np.vstack([(det[:, 0] + det[:, 2]) / 2 - centre[1], (det[:, 1] + det[:, 3]) / 2 - centre[0]])
    return int(np.argmax(size - np.sum(offsets ** 2, axis=0) * 2.0))


def margin_box(box, margin, image_shape):
    """Integer crop box [x1, y1, x2, y2]: the detection grown by margin/2 per side, clipped to the image."""
    bb = np.zeros(4, dtype=np.int32)
    bb[0] = np.maximum(box[0] - margin / 2, 0)
    bb[1] = np.maximum(box[1] - margin / 2, 0)
    bb[2] = np.minimum(box[2] + margin / 2, image_shape[1])
    bb[3] = np.minimum(box[3] + margin / 2, image_shape[0])
    return bb


def resize_bilinear(img, image_size):
    """image_size x image_size uint8 with PIL's bilinear filter (antialiased when shrinking)."""
    return np.asarray(Image.fromarray(img).resize((image_size, image_size), Image.BILINEAR))


def crop_face(img, box, image_size, margin):
    """(image_size x image_size uint8 crop, int box [x1, y1, x2, y2]) for one detection box.

    Returns (None, bb) when the clipped box is empty (a box lying outside the image).
    """
    bb = margin_box(box, margin, img.shape)
    if bb[2] <= bb[0] or bb[3] <= bb[1]:
        return None, bb
    cropped = np.ascontiguousarray(img[bb[1]:bb[3], bb[0]:bb[2], :])
    return resize_bilinear(cropped, image_size), bb


def align_face(img, points, index, image_size):
    """Face `index` warped onto the five-point template (image_size x image_size uint8)."""
    return align_to_template(img, face_points(points, index), image_size)


def detection_copy(img, max_side=MAX_DETECT_SIDE):
    """(image to detect on, (sx, sy) from it back to `img` or None).

    max_side 0 or None: `img` itself (the classic behaviour); else images longer than max_side are
    shrunk so that their longest side is max_side.
    """
    h, w = img.shape[0], img.shape[1]
    if not max_side or max(h, w) <= max_side:
        return img, None
    ratio = float(max_side) / max(h, w)
    small = imresample(img, (max(1, int(round(h * ratio))), max(1, int(round(w * ratio)))))
    return small, (w / float(small.shape[1]), h / float(small.shape[0]))


def map_back(boxes, points, back):
    """Boxes [N, 5] and points [10, N] from the detection copy to the original image."""
    if back is None:
        return boxes, points
    sx, sy = back
    boxes = boxes.copy()
    points = points.copy()
    boxes[:, [0, 2]] *= sx
    boxes[:, [1, 3]] *= sy
    points[0:5] *= sx
    points[5:10] *= sy
    return boxes, points


def prepare(detector, img, max_side=MAX_DETECT_SIDE):
    """(detector pyramid of img or of its reduced copy, scale back to img): work that may run ahead."""
    small, back = detection_copy(img, max_side)
    return detector.pyramid(small), back


def detect_prepared(detector, prepared):
    """(boxes, points) in original pixels for a list of prepare() results, one batched detection."""
    found = detector.detect_batch([pyr for pyr, _ in prepared])
    return [map_back(b, p, back) for (b, p), (_, back) in zip(found, prepared)]


def detect_faces(detector, images, max_side=MAX_DETECT_SIDE):
    """detector.detect_batch on the images (on reduced copies of those longer than max_side when
    max_side > 0); (boxes, points) in each original's pixels."""
    return detect_prepared(detector, [prepare(detector, img, max_side) for img in images])


def max_detect_side(text):
    """argparse type of --max_detect_side: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError('expected an integer, got %r' % text)
    if value < 0:
        raise argparse.ArgumentTypeError('must be 0 (off) or a positive number of pixels, got %d' % value)
    return value


def add_max_detect_side_argument(parser):
    """Add the scripts' `--max_detect_side N` option (0 = off, the default) to an argparse parser."""
    parser.add_argument('--max_detect_side', type=max_detect_side, default=0, metavar='N',
                        help='Detect faces on a copy of each image reduced to N pixels on its longest '
                             'side (only images longer than N; boxes are mapped back to the full image): '
                             'faster on large photos, slightly different boxes. 0 (default): detect on '
                             'the full image, as the classic tools.')
    return parser


def add_detector_argument(parser):
    """Add the tools' `--detector tf|onnx|tflite` option (which runtime runs the MTCNN networks)."""
    parser.add_argument('--detector', choices=DETECTORS, default='tf',
                        help='Run the MTCNN networks with TensorFlow (default), onnxruntime or the TFLite '
                             'interpreter: the same cascade, boxes within 1e-4 px of TensorFlow\'s. The '
                             'exported networks are made once into the cache on first use.')
    return parser
