"""Export the MTCNN networks (PNet, RNet, ONet) to ONNX and TensorFlow Lite files in a folder.

Usage: facenet-export-mtcnn OUTPUT_DIR [--format onnx tflite] [--model_path DIR] [--overwrite]
The tools need no manual export (`--detector onnx|tflite` exports into the cache on first use);
this writes the same files where you want them, e.g. for another program.
"""
import os
import sys

from facenet_tf import files, tf_setup
from facenet_tf.cli import ArgumentParser, command
from facenet_tf.errors import FaceNetError

FORMATS = ('onnx', 'tflite')
NETS = ('pnet', 'rnet', 'onet')


def main(args):
    out_dir = args.output_dir
    if os.path.lexists(out_dir) and not os.path.isdir(out_dir):
        raise FaceNetError('%s: exists and is not a folder' % out_dir)
    for fmt in args.format:
        for net in NETS:
            files.check_new_output(os.path.join(out_dir, '%s.%s' % (net, fmt)), args.overwrite)
    tf_setup.configure()
    from facenet_tf.align import mtcnn_export
    from facenet_tf.align.mtcnn_weights import load_weights
    weights = load_weights(args.model_path)
    written = mtcnn_export.export(out_dir, weights, tuple(args.format))
    for path, size in written:
        print('wrote %s (%.2f MB)' % (path, size / 1e6))
    print('weights sha256 (with the exporter version): %s' % mtcnn_export.weights_digest(weights))
    return 0


def parse_arguments(argv):
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('output_dir', type=str, help='Folder to write <net>.onnx / <net>.tflite into.')
    parser.add_argument('--format', nargs='+', choices=FORMATS, default=list(FORMATS),
                        help='Formats to write (default: both).')
    parser.add_argument('--model_path', type=str, default=None,
                        help='Folder with det1.npy, det2.npy, det3.npy (default: the packaged weights).')
    files.add_overwrite_argument(parser, 'existing exported files')
    args = parser.parse_args(argv)
    args.format = list(dict.fromkeys(args.format))
    return args


def console_main():
    """The `facenet-export-mtcnn` command (also `python -m facenet_tf.export_mtcnn`)."""
    return command(main, parse_arguments)


if __name__ == '__main__':
    sys.exit(console_main())
