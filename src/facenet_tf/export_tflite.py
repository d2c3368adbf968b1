"""Convert a FaceNet model (frozen .pb or checkpoint folder) to TensorFlow Lite.

Usage: python src/export_tflite.py model output_file [--image_size 160] [--overwrite]
"""
import sys

from facenet_tf import files, tf_setup
from facenet_tf.cli import ArgumentParser, command


def main(args):
    tf_setup.configure()
    from facenet_tf import model_io
    model_io.find_model(args.model)
    files.check_new_output(args.output_file, args.overwrite)
    size = model_io.export_tflite(args.model, args.output_file, args.image_size)
    print('wrote %s (%.1f MB): input [1, %d, %d, 3] -> embeddings'
          % (args.output_file, size / 1e6, args.image_size, args.image_size))


def parse_arguments(argv):
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('model', type=str, help='A frozen model (.pb) or a checkpoint folder')
    parser.add_argument('output_file', type=str, help='The .tflite file to write')
    parser.add_argument('--image_size', type=int, default=160, help='Input image size in pixels.')
    files.add_overwrite_argument(parser, 'the output .tflite file')
    return parser.parse_args(argv)



def console_main():
    """The `facenet-export-tflite` command (also `python -m facenet_tf.export_tflite`)."""
    return command(main, parse_arguments)


if __name__ == '__main__':
    sys.exit(console_main())
