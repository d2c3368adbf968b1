"""Detect and align a face in each image, embed them, and print the distance matrix.

Usage: python src/compare.py model image_files... [--image_size 160] [--margin 44] [--max_detect_side N]
"""
import argparse
import os
import sys

import numpy as np

from facenet_tf.align import aligner
from facenet_tf import faces as faces_lib
from facenet_tf import images as image_lib
from facenet_tf import tf_setup
from facenet_tf.cli import (ArgumentParser, add_gpu_memory_arguments, add_model_argument, add_standardization_argument,
                            command)
from facenet_tf.errors import FaceNetError
from facenet_tf.precision import add_precision_argument
from facenet_tf.sources import regular_file


DETECT_BATCH = 8     # photos detected in one detector call
EMBED_BATCH = 100    # faces embedded in one network call


def _usable(path):
    """Why `path` is left out before it is read (a FIFO or a device is never opened), or None."""
    if regular_file(path):
        return None
    return ('not a regular file (a FIFO, device or folder is never read)' if os.path.lexists(path)
            else 'no such file')


def load_and_align_data(image_paths, image_size, margin, standardize, max_detect_side=0, gpu_memory_fraction=None,
                        allow_growth=False):
    """(kept paths, [N, size, size, 3] float images): the first detected face of each image (the
    classic compare.py choice), cropped by the face service (margin/2 per side, PIL bilinear resize)
    and standardised; photos are detected DETECT_BATCH at a time; unusable images are named (in
    the order given, on stderr) and left out. Detection runs on the full image unless max_detect_side > 0
    (then on a copy reduced to that side); gpu_memory_fraction and allow_growth set the detector's
    GPU memory."""
    from facenet_tf.align.detect_face import MTCNN
    crops = []
    with MTCNN(gpu_memory_fraction=gpu_memory_fraction, allow_growth=allow_growth) as detector:
        service = faces_lib.FacePipeline(None, detector, image_size, margin, max_detect_side=max_detect_side)
        service.standardize = standardize
        for start in range(0, len(image_paths), DETECT_BATCH):
            notes, read = {}, []
            for path in image_paths[start:start + DETECT_BATCH]:
                problem = _usable(path)
                if problem:
                    notes[path] = '%s: %s: left out' % (path, problem)
                    continue
                try:
                    read.append((path, image_lib.read_rgb(path)))
                except image_lib.ImageReadError as e:
                    notes[path] = 'cannot read %s (%s): left out' % (path, e)
            found = service.detect([img for _, img in read])
            for (path, img), (boxes, _) in zip(read, found):
                if boxes.shape[0] < 1:
                    notes[path] = "can't detect face in %s: left out" % path
                    continue
                crop, _ = service.crop(img, boxes[faces_lib.one_face(boxes, img.shape, faces_lib.FIRST)])
                if crop is None:
                    notes[path] = "can't crop the face in %s: left out" % path
                    continue
                crops.append((path, crop))
            for path in image_paths[start:start + DETECT_BATCH]:
                if notes.get(path):
                    print(notes[path], file=sys.stderr)
    kept = [path for path, _ in crops]
    return kept, np.stack([c for _, c in crops]) if crops else np.zeros((0, image_size, image_size, 3), np.float32)


def embed(model, faces, precision, gpu_memory_fraction=None, allow_growth=False):
    """Embeddings of the aligned faces with the model (a .pb, a checkpoint folder, .tflite or .onnx),
    EMBED_BATCH at a time."""
    tf_setup.configure()
    from facenet_tf.runtimes import open_model
    settings = argparse.Namespace(precision=precision, gpu_memory_fraction=gpu_memory_fraction,
                                  allow_growth=allow_growth)
    with open_model(model, settings, image_size=faces.shape[1]) as runner:
        return faces_lib.embed_faces(runner, faces, EMBED_BATCH)


def distance_matrix(emb):
    """Pairwise Euclidean distances between rows."""
    diff = emb[:, None, :] - emb[None, :, :]
    return np.sqrt(np.sum(np.square(diff), axis=2))


def print_matrix(paths, dist):
    """The classic compare.py report: numbered images, then the distance matrix with 4 decimals."""
    print('Images:')
    for i, path in enumerate(paths):
        print('%1d: %s' % (i, path))
    print('')
    print('Distance matrix')
    print('    ' + ''.join('    %1d     ' % i for i in range(len(paths))))
    for i in range(len(paths)):
        print('%1d  ' % i + ''.join('  %1.4f  ' % dist[i, j] for j in range(len(paths))))


def main(args):
    tf_setup.configure()
    standardize = faces_lib.standardizer(args.use_fixed_image_standardization)
    paths, faces = load_and_align_data(args.image_files, args.image_size, args.margin, standardize,
                                       args.max_detect_side, args.gpu_memory_fraction, args.allow_growth)
    if len(paths) < 2:
        raise FaceNetError('need at least two images with a detectable face, got %d' % len(paths))
    emb = embed(args.model, faces, args.precision, args.gpu_memory_fraction, args.allow_growth)
    print_matrix(paths, distance_matrix(emb))


def parse_arguments(argv):
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    add_model_argument(parser)
    parser.add_argument('image_files', type=str, nargs='+', help='Images to compare')
    parser.add_argument('--image_size', type=int, help='Image size (height, width) in pixels.', default=160)
    parser.add_argument('--margin', type=int,
                        help='Margin for the crop around the bounding box (height, width) in pixels.',
                        default=44)
    add_gpu_memory_arguments(parser)
    add_standardization_argument(parser)
    aligner.add_max_detect_side_argument(parser)
    add_precision_argument(parser)
    return parser.parse_args(argv)



def console_main():
    """The `facenet-compare` command (also `python -m facenet_tf.compare`)."""
    return command(main, parse_arguments)


if __name__ == '__main__':
    sys.exit(console_main())
