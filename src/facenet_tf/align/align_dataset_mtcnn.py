"""Detect, crop and save the faces of a dataset folder with MTCNN (classic script and flags).

Example: python src/align/align_dataset_mtcnn.py ~/datasets/lfw/raw ~/datasets/lfw/lfw_mtcnnpy_160 \
             --image_size 160 --margin 32
In N cluster tasks on one shared output folder: add --shard INDEX/N (or run as a Slurm array task /
Kubernetes Indexed Job, see docs/cluster_jobs.md).
"""
import argparse
import os
import sys

from facenet_tf import sharding, tf_setup
from facenet_tf.dataset import is_image_name
from facenet_tf.align.aligner import add_detector_argument, add_max_detect_side_argument
from facenet_tf.cli import ArgumentParser, add_gpu_memory_arguments, non_negative_int, positive_int, command
from facenet_tf.errors import FaceNetError


def _flag(value):
    """Classic boolean flags may be given bare or with a value (True/False, 1/0, yes/no)."""
    text = str(value).strip().lower()
    if text in ('1', 'true', 'yes', 'y', 'on'):
        return True
    if text in ('0', 'false', 'no', 'n', 'off'):
        return False
    raise argparse.ArgumentTypeError('expected true or false, got %r' % value)


def _holds_images(folder):
    try:
        return any(is_image_name(n) and os.path.isfile(os.path.join(folder, n)) for n in os.listdir(folder))
    except OSError:
        return False


def check_per_person_folders(input_dir, output_dir):
    """FaceNetError, before anything is written, for an input folder that holds images itself but
    no sub-folder with images: the aligner reads INPUT/<person>/<image> and would find nothing. The
    output folder inside it is not a person."""
    folder = os.path.expanduser(input_dir)
    if not _holds_images(folder):
        return
    out_real = os.path.realpath(os.path.expanduser(output_dir))
    subs = [os.path.join(folder, n) for n in os.listdir(folder) if not n.startswith('.')]
    if not any(os.path.isdir(p) and os.path.realpath(p) != out_real and _holds_images(p) for p in subs):
        name = input_dir.rstrip('/') or input_dir
        raise FaceNetError('%s holds images but no per-person folders: the aligner expects %s/<person>/<image>; '
                           'move them into one folder per person (or one folder, e.g. %s/all/) and run again'
                           % (name, name, name))


def main(args):
    if not os.path.isdir(os.path.expanduser(args.input_dir)):
        raise FaceNetError('input folder not found: %s' % args.input_dir)
    check_per_person_folders(args.input_dir, args.output_dir)
    shard, source = sharding.resolve(args.shard, args.shard_count)
    if shard is not None and source != '--shard':
        print('Shard %s from %s' % (shard, source))
    tf_setup.configure()
    from facenet_tf.align.batch_alignment import Options
    from facenet_tf.align.dataset_alignment import align_dataset, nothing_aligned, remove_output_left_empty, \
        summary_line
    opts = Options(args.image_size, args.margin, args.detect_multiple_faces, args.landmark_alignment,
                   args.max_detect_side, args.gpu_memory_fraction, args.allow_growth, args.detector)
    if args.detector != 'tf':   # runtime present, networks exported: once, before workers start
        from facenet_tf.align.mtcnn_runtimes import prepare_detector
        prepare_detector(args.detector)
    counts = align_dataset(args.input_dir, args.output_dir, opts, random_order=args.random_order,
                           num_workers=args.num_workers, arg_string=' '.join(sys.argv), shard=shard)
    print(summary_line(counts))
    if counts['total'] == 0 and shard is not None and counts['input_images']:
        print('No images in %s for shard %s (the other shards have them)' % (args.input_dir, shard), file=sys.stderr)
    nothing = nothing_aligned(counts)
    if nothing:
        print('%s in %s%s' % (nothing, args.input_dir, '' if shard is None else ' for shard %s' % (shard,)))
        if shard is None and remove_output_left_empty(args.output_dir, counts):
            print('Removed the output folder this run created: %s' % args.output_dir)
        return 1
    return 0


def parse_arguments(argv):
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('input_dir', type=str, help='Directory with unaligned images (one folder per class).')
    parser.add_argument('output_dir', type=str, help='Directory with aligned face thumbnails.')
    parser.add_argument('--image_size', type=positive_int, help='Image size (height, width) in pixels.', default=182)
    parser.add_argument('--margin', type=non_negative_int, default=44,
                        help='Margin for the crop around the bounding box (height, width) in pixels.')
    parser.add_argument('--random_order', action='store_true',
                        help='Shuffles the order of images to enable alignment using multiple processes.')
    add_gpu_memory_arguments(parser)
    parser.add_argument('--detect_multiple_faces', type=_flag, nargs='?', const=True, default=False,
                        help='Detect and align multiple faces per image.')
    parser.add_argument('--landmark_alignment', type=_flag, nargs='?', const=True, default=False,
                        help='Warp each face onto the five-point 112x112 template (scaled to image_size) '
                             'instead of cropping its box with the margin.')
    parser.add_argument('--num_workers', type=positive_int, default=1,
                        help='Processes that detect and write in parallel.')
    add_max_detect_side_argument(parser)
    add_detector_argument(parser)
    sharding.add_shard_arguments(parser)
    return parser.parse_args(argv)



def console_main():
    """The `facenet-align` command (also `python -m facenet_tf.align`)."""
    return command(main, parse_arguments)


if __name__ == '__main__':
    sys.exit(console_main())
