"""Convert a FaceNet model (frozen .pb or checkpoint folder) to TensorFlow Lite, optionally quantized.

Usage: python src/export_tflite.py model output_file [--image_size 160] [--overwrite]
           [--quantize none|fp16|dynamic|int8 [--representative DIR [--max_images 64]]]

The input `input` is [N, S, S, 3] float32 with a free batch dimension (the interpreter is resized to
each batch), the output `embeddings` [N, D]. --quantize fp16 stores the weights as float16; dynamic
stores int8 weights and quantizes activations at run time; int8 is full-integer (int8 weights and
activations, calibrated on the aligned crops of --representative) with float32 input and output, so
every tool feeds it as usual.
"""
import os
import sys

import numpy as np

from facenet_tf import files, tf_setup
from facenet_tf.cli import ArgumentParser, add_standardization_argument, command, positive_int
from facenet_tf.errors import FaceNetError

QUANTIZATIONS = ('none', 'fp16', 'dynamic', 'int8')   # model_io.QUANTIZATIONS, without importing TensorFlow


def start_export(args):
    """The checks both export tools make before converting (model found, output new, --quantize int8
    with --representative); the calibration crops of an int8 export, else None."""
    tf_setup.configure()
    from facenet_tf import model_io
    model_io.find_model(args.model)
    files.check_new_output(args.output_file, args.overwrite)
    if (args.quantize == 'int8') != bool(args.representative):
        raise FaceNetError('--quantize int8 needs --representative DIR (aligned crops to calibrate on)'
                           if args.representative == '' else '--representative is used by --quantize int8 only')
    if args.quantize != 'int8':
        return None
    return representative_crops(args.representative, args.image_size, args.max_images,
                                args.use_fixed_image_standardization)


def main(args):
    from facenet_tf import model_io
    crops = start_export(args)
    size = model_io.export_tflite(args.model, args.output_file, args.image_size, args.quantize, crops)
    kind = 'int8, calibrated on %d crops' % len(crops) if crops is not None else \
        {'none': 'fp32', 'fp16': 'fp16 weights', 'dynamic': 'int8 weights'}[args.quantize]
    print('wrote %s (%.1f MB, %s): input [N, %d, %d, 3] -> embeddings'
          % (args.output_file, size / 1e6, kind, args.image_size, args.image_size))
    return 0


def representative_crops(folder, image_size, max_images, fixed_standardization=False):
    """Standardised float32 crops [n, S, S, 3] of at most max_images aligned images of `folder` (a
    dataset folder of class folders, or a flat folder), spread evenly over its sorted images: the
    calibration set of an int8 export. Crops larger than image_size are cut at the centre, as the
    tools feed them."""
    from facenet_tf.dataset import get_image_paths, note_skipped
    from facenet_tf.images import ImageReadError, crop, fixed_standardize, prewhiten, read_rgb
    folder = os.path.expanduser(folder)
    if not os.path.isdir(folder):
        raise FaceNetError('%s: the representative crops must be a folder of aligned images' % folder)
    skipped = []
    paths = get_image_paths(folder, skipped)
    for name in sorted(os.listdir(folder)):
        paths += get_image_paths(os.path.join(folder, name), skipped)
    note_skipped(skipped, lambda line: sys.stderr.write(line + '\n'))
    if not paths:
        raise FaceNetError('%s: no images (the representative set is a folder of aligned crops)' % folder)
    picked = [paths[k] for k in np.unique(np.linspace(0, len(paths) - 1, min(max_images, len(paths))).astype(int))]
    standardize = fixed_standardize if fixed_standardization else prewhiten
    crops = np.zeros((len(picked), image_size, image_size, 3), np.float32)
    for k, path in enumerate(picked):
        try:
            image = crop(read_rgb(path), False, image_size)
        except ImageReadError as e:
            raise FaceNetError('cannot read image %s: %s' % (path, e))
        if image.shape[:2] != (image_size, image_size):
            raise FaceNetError('%s: %dx%d, smaller than the %dx%d crops of the model (align with --image_size %d)'
                               % (path, image.shape[1], image.shape[0], image_size, image_size, image_size))
        crops[k] = standardize(image)
    return crops


def parse_arguments(argv):
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('model', type=str, help='A frozen model (.pb) or a checkpoint folder')
    parser.add_argument('output_file', type=str, help='The .tflite file to write')
    parser.add_argument('--image_size', type=positive_int, default=160, help='Input image size in pixels.')
    parser.add_argument('--quantize', choices=QUANTIZATIONS, default='none',
                        help='none (fp32), fp16 (float16 weights), dynamic (int8 weights) or int8 (full integer, '
                             'calibrated on --representative).')
    add_representative_arguments(parser)
    files.add_overwrite_argument(parser, 'the output .tflite file')
    return parser.parse_args(argv)


def add_representative_arguments(parser):
    """--representative, --max_images and --use_fixed_image_standardization: the calibration crops of
    an int8 export (shared with export_tflite)."""
    parser.add_argument('--representative', type=str, default='',
                        help='A folder of aligned crops (class folders or flat) to calibrate an int8 model on.')
    parser.add_argument('--max_images', type=positive_int, default=64,
                        help='At most this many crops of --representative, spread over the folder (default 64).')
    add_standardization_argument(parser, 'the calibration crops')



def console_main():
    """The `facenet-export-tflite` command (also `python -m facenet_tf.export_tflite`)."""
    return command(main, parse_arguments)


if __name__ == '__main__':
    sys.exit(console_main())
