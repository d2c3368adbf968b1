"""Train a face embedding network with triplet loss and online triplet selection (classic script).

Each round samples people_per_batch people with up to images_per_person images each, embeds them
through the input pipeline (no augmentation), selects triplets with `--triplet_selection`, and trains
on them batch by batch until the epoch's epoch_size steps are done (only as many triplets are queued
as the epoch still has steps for). `--data_dir` is a folder of identity folders (several joined by
':') or a record dataset (a folder holding `train.rec` + `train.idx`). Every epoch: a checkpoint in
the classic layout, summaries, and with --lfw_dir (and --val_set) the verification check. main builds
the run's TripletConfig from the flags; everything after reads it.
"""
import sys

from facenet_tf import training
from facenet_tf.cli import ArgumentParser, command
from facenet_tf.errors import FaceNetError
from facenet_tf.training import triplets
from facenet_tf.training.triplets import sample_people, select_triplets  # noqa: F401 (classic names)

# classic names that need TensorFlow: loaded with the run module on first use (see __getattr__)
RUN_NAMES = ('TripletConfig', 'TripletGraph', 'TripletRounds', 'BatchMining', 'build_graph',
             'get_learning_rate_from_file', 'save_variables_and_metagraph')


def main(args):
    """Check the flags, then train (TensorFlow loads here, after the flags are read)."""
    if args.batch_size % 3 != 0 or args.batch_size <= 0:
        raise FaceNetError('--batch_size must be a positive multiple of 3, got %d' % args.batch_size)
    if args.people_per_batch < 2 or args.images_per_person < 1:
        raise FaceNetError('--people_per_batch must be at least 2 and --images_per_person at least 1')
    if args.nrof_preprocess_threads < 1:
        raise FaceNetError('--nrof_preprocess_threads must be at least 1')
    from facenet_tf.training import triplet_tool
    return triplet_tool.main(args)


def parse_arguments(argv):
    parser = ArgumentParser(description=__doc__.split('\n')[0])
    training.add_common_arguments(parser, max_nrof_epochs=500, batch_size_extra=' (a multiple of 3)')
    parser.add_argument('--people_per_batch', type=int, default=45, help='People sampled per selection round.')
    parser.add_argument('--images_per_person', type=int, default=40, help='Images sampled per person.')
    parser.add_argument('--alpha', type=float, default=0.2, help='Positive to negative triplet distance margin.')
    parser.add_argument('--triplet_selection', type=str, choices=list(triplets.SELECTIONS), default='vggface',
                        help='Negative selection: vggface (classic), semihard (also pos < neg), hardest.')
    parser.add_argument('--triplet_mining', type=str, choices=['rounds', 'batch'], default='rounds',
                        help='rounds (classic): embed people_per_batch x images_per_person images, select '
                        'triplets, train on them; batch: each batch is batch_size images of people with up to '
                        'images_per_person each, and every triplet of the batch that --triplet_selection '
                        'admits is trained on (people_per_batch unused).')
    return training.parse_with_config(parser, argv)


def console_main():
    """The `facenet-train-triplet` command (also `python -m facenet_tf.train_triplet`)."""
    return command(main, parse_arguments)


def __getattr__(name):
    if name in RUN_NAMES:
        from facenet_tf.training import triplet_tool
        return getattr(triplet_tool, name)
    raise AttributeError('module %r has no attribute %r' % (__name__, name))


if __name__ == '__main__':
    sys.exit(console_main())
