"""Export the embeddings of every image of an aligned dataset to an HDF5 embeddings file (resumable,
shardable), or merge the files of the shards of one export.

Examples:
  python src/export_embeddings.py ~/models/20170512-110547.pb ~/datasets/lfw_160 ~/lfw_emb.h5
  python src/export_embeddings.py model.pb aligned/ emb.h5 --shard 3/10     # writes emb.shard_3_of_10.h5
  python src/export_embeddings.py --merge emb.h5 emb.shard_*_of_10.h5     # --overwrite replaces emb.h5

The file holds `embeddings` (float32 [N, D]), `labels`, `paths` (relative to the dataset folder),
`class_names` and the model's name and preprocessing flags as attributes (docs/cluster_jobs.md).
classifier.py and validate_on_lfw.py take it in place of an image folder.
"""
import sys

from facenet_tf import embedding_export, embeddings_file, sharding, tf_setup
from facenet_tf.cli import (ArgumentParser, add_model_argument, add_standardization_argument, command, doc_parser,
                            positive_int)
from facenet_tf.files import add_overwrite_argument, check_new_output


def main(args):
    if args.merge:
        check_new_output(args.output, args.overwrite)
        merged = embeddings_file.merge(args.inputs, args.output)
        print('Merged %d files into %s: %d embeddings of %d classes' % (
            len(args.inputs), args.output, len(merged.paths), len(merged.class_names)))
        return 0
    from facenet_tf.model_io import find_model
    find_model(args.model)
    shard, source = sharding.resolve(args.shard, args.shard_count)
    if shard is not None and source != '--shard':
        print('Shard %s from %s' % (shard, source))
    settings = embedding_export.Settings(args.image_size, args.batch_size, args.use_fixed_image_standardization,
                                         args.use_flipped_images, args.precision)
    counts = embedding_export.export(args.model, args.data_dir, args.output, settings, shard=shard,
                                     chunk_size=args.chunk_size, log=lambda m: print(m, file=sys.stderr, flush=True),
                                     session_args=args)
    print(embedding_export.summary_line(counts))
    return 0


def _merge_parser():
    parser = ArgumentParser(prog='export_embeddings.py --merge',
                            description='Merge the shard files of one export into one file.')
    parser.add_argument('output', help='The merged embeddings file to write.')
    parser.add_argument('inputs', nargs='+', help='The files of shards 0..COUNT-1.')
    add_overwrite_argument(parser, 'the merged file')
    return parser


def parse_arguments(argv):
    if '--merge' in argv:
        args = _merge_parser().parse_args([a for a in argv if a != '--merge'])
        args.merge = True
        return args
    parser = doc_parser(__doc__)
    add_model_argument(parser)
    parser.add_argument('data_dir', type=str, help='The aligned dataset: one sub-folder of face images per class.')
    parser.add_argument('output', type=str, help='The embeddings file to write (.h5); with a shard, '
                                                 '<stem>.shard_<INDEX>_of_<COUNT>.h5.')
    parser.add_argument('--merge', action='store_true',
                        help='Merge instead: export_embeddings.py --merge OUTPUT SHARD_FILE...')
    parser.add_argument('--batch_size', type=positive_int, default=100, help='Number of images in a batch.')
    parser.add_argument('--image_size', type=positive_int, default=160, help='Image size (height, width) in pixels.')
    add_standardization_argument(parser)
    parser.add_argument('--use_flipped_images', action='store_true',
                        help='Store [embedding of the image | embedding of its mirror image] per row.')
    parser.add_argument('--chunk_size', type=positive_int, default=embedding_export.DEFAULT_CHUNK_SIZE,
                        help='Images per saved chunk (rounded up to whole batches): the most work a kill '
                             'can lose.')
    sharding.add_shard_arguments(parser)
    tf_setup.add_inference_arguments(parser)
    return parser.parse_args(argv)



def console_main():
    """The `facenet-export-embeddings` command (also `python -m facenet_tf.export_embeddings`)."""
    return command(main, parse_arguments)


if __name__ == '__main__':
    sys.exit(console_main())
