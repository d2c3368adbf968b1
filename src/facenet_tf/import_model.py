"""Import a published Keras FaceNet model (.h5, e.g. facenet_keras.h5) as a classic model folder.

Usage: python src/import_keras_model.py facenet_keras.h5 ~/models/20170512-110547 [--pb FILE] [--overwrite]

Reads the weights only (h5py; the file's Lambda-layer code is never run), maps them onto the classic
variable names, checks that every variable of the network gets exactly one weight of its shape, and
writes `model-<name>.meta` + `model-<name>.ckpt-0` with the classic tensor names (`image_batch`,
`label_batch`, `input`, `phase_train`, `embeddings`); --pb also writes the frozen graph. An existing
model folder (unless empty) or .pb is replaced only with --overwrite; nothing is written before the
weights have been read and checked.
"""
import os
import sys

from facenet_tf import files, keras_import, tf_setup, torch_import
from facenet_tf.cli import ArgumentParser, command


def main(args):
    tf_setup.configure()
    from facenet_tf.training import import_network
    name = args.model_name or os.path.splitext(os.path.basename(args.h5_file))[0]
    is_torch = args.h5_file.lower().endswith(torch_import.SUFFIXES)   # .pt/.pth: a PyTorch state dict
    importer = torch_import if is_torch else keras_import
    importer.import_model(args.h5_file, args.model_dir, import_network(args.model_def), name,
                          pb_file=args.pb, overwrite=args.overwrite)
    return 0


def parse_arguments(argv):
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('h5_file', type=str, help='The Keras HDF5 model file (e.g. facenet_keras.h5), or a '
                        'facenet-pytorch state dict (.pt, e.g. 20180402-114759-vggface2.pt).')
    parser.add_argument('model_dir', type=str, help='The model folder to write (new or empty).')
    parser.add_argument('--pb', type=str, default='', help='Also write the frozen graph to this .pb file.')
    parser.add_argument('--model_def', type=str, default='models.inception_resnet_v1',
                        help='Network definition the weights belong to.')
    parser.add_argument('--model_name', type=str, default='',
                        help='Name in model-<name>.meta / .ckpt-0 (default: the .h5 file name).')
    files.add_overwrite_argument(parser, 'an existing model folder and .pb')
    return parser.parse_args(argv)



def console_main():
    """The `facenet-import-model` command (also `python -m facenet_tf.import_model`)."""
    return command(main, parse_arguments)


if __name__ == '__main__':
    sys.exit(console_main())
