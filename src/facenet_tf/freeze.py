"""Freeze a checkpoint folder into a single `.pb`: variables as constants, inference branch only.

Usage: python src/freeze_graph.py model_dir output_file [--use_moving_averages] [--overwrite]
"""
import sys

from facenet_tf import files, tf_setup
from facenet_tf.cli import ArgumentParser, command


def main(args):
    tf_setup.configure()
    from facenet_tf import model_io
    model_io.find_model(args.model_dir)
    files.check_new_output(args.output_file, args.overwrite)
    nodes = model_io.freeze_model(args.model_dir, args.output_file, args.use_moving_averages)
    print('%d ops in the final graph: %s' % (nodes, args.output_file))


def parse_arguments(argv):
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('model_dir', type=str,
                        help='Folder holding the model metagraph (.meta) and checkpoint (ckpt) files.')
    parser.add_argument('output_file', type=str, help='Filename for the exported graphdef protobuf (.pb)')
    parser.add_argument('--use_moving_averages', action='store_true',
                        help='Freeze the moving averages of the weights (kept by the training scripts) '
                        'instead of the weights.')
    files.add_overwrite_argument(parser, 'the output .pb file')
    return parser.parse_args(argv)



def console_main():
    """The `facenet-freeze` command (also `python -m facenet_tf.freeze`)."""
    return command(main, parse_arguments)


if __name__ == '__main__':
    sys.exit(console_main())
