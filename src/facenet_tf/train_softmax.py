"""Train a face embedding network as a classifier of the training identities (classic script).

Losses: softmax cross-entropy on a fully connected `Logits` layer (classic), or a margin softmax on
normalised embeddings and class vectors (`--loss arcface|cosface|combined`); optionally center
loss and prelogits norm loss, plus weight decay. `--data_dir` is a folder of identity folders
(several joined by ':') or a record dataset (a folder holding `train.rec` + `train.idx`).

Every epoch: epoch_size steps of batch_size images drawn from a shuffled stream of the training
images, a checkpoint `model-<subdir>.ckpt-<epoch>` in the classic layout, summaries, statistics in
`<log_dir>/stat.h5`, the validation set every validate_every_n_epochs epochs (and at the last one)
and with --lfw_dir (and --val_set) the verification check. main builds the run's SoftmaxConfig from
the flags; everything after reads it.
"""
import sys

from facenet_tf import cli, training
from facenet_tf.cli import ArgumentParser, command
from facenet_tf.errors import FaceNetError
from facenet_tf.training.config import LOSSES, margin_parameters
from facenet_tf.training.softmax_training import find_threshold  # noqa: F401 (classic name)

# classic names that need TensorFlow: loaded with the run module on first use (see __getattr__)
RUN_NAMES = ('SoftmaxConfig', 'SoftmaxGraph', 'SoftmaxEpochs', 'build_graph', 'filter_dataset', 'load_sets',
             'get_learning_rate_from_file', 'save_variables_and_metagraph')


def _check_args(args):
    """The flags checked; returns the margins (m1, m2, m3) of a margin loss, or None."""
    if args.batch_size <= 0 or args.epoch_size <= 0 or args.max_nrof_epochs <= 0:
        raise FaceNetError('--batch_size, --epoch_size and --max_nrof_epochs must be positive')
    if args.nrof_preprocess_threads < 1:
        raise FaceNetError('--nrof_preprocess_threads must be at least 1')
    if args.validate_every_n_epochs < 1 or args.lfw_batch_size < 1:
        raise FaceNetError('--validate_every_n_epochs and --lfw_batch_size must be at least 1')
    if not 0.0 <= args.validation_set_split_ratio < 1.0:
        raise FaceNetError('--validation_set_split_ratio must be in [0, 1)')
    if not 0.0 <= args.center_loss_alfa <= 1.0:
        raise FaceNetError('--center_loss_alfa must be in [0, 1]')
    if args.prelogits_hist_max <= 0.0:
        raise FaceNetError('--prelogits_hist_max must be positive')
    if args.sample_rate <= 0.0:
        raise FaceNetError('--sample_rate must be in (0, 1]')
    if args.sample_rate < 1.0 and args.loss == 'softmax':
        raise FaceNetError('--sample_rate below 1 needs a margin loss (--loss arcface, cosface or combined)')
    if args.loss == 'softmax':
        return None
    if args.margin_s <= 0.0:
        raise FaceNetError('--margin_s must be positive')
    try:
        return margin_parameters(args.loss, args.margin_m1, args.margin_m2, args.margin_m3)
    except ValueError as e:
        raise FaceNetError('--loss %s: %s' % (args.loss, e))



def main(args):
    """Check the flags, then train (TensorFlow loads here, after the flags are read)."""
    margins = _check_args(args)
    from facenet_tf.training import softmax_tool
    return softmax_tool.main(args, margins)


def parse_arguments(argv):
    parser = ArgumentParser(description=__doc__.split('\n')[0])
    training.add_common_arguments(parser, max_nrof_epochs=100)
    parser.add_argument('--loss', type=str, choices=list(LOSSES), default='softmax',
                           help='softmax (classic Logits layer) or a margin softmax on normalised embeddings.')
    parser.add_argument('--margin_s', type=float, default=64.0, help='Scale s of the margin losses.')
    parser.add_argument('--sample_rate', type=cli.fraction, default=1.0,
                           help='Share R of the class centres in each step\'s margin softmax: the batch\'s classes '
                           'plus random others (PartialFC; 1 = all; below 1 the centres are Logits/centres rows, '
                           'updated sparsely).')
    parser.add_argument('--margin_m1', type=float, default=None,
                           help='Angle multiplier m1 of cos(m1*theta + m2) - m3 (default 1).')
    parser.add_argument('--margin_m2', type=float, default=None,
                           help='Additive angle m2 (default: arcface 0.5, cosface 0, combined 0.3).')
    parser.add_argument('--margin_m3', type=float, default=None,
                           help='Cosine margin m3 (default: arcface 0, cosface 0.35, combined 0.2).')
    parser.add_argument('--center_loss_factor', type=float, default=0.0, help='Center loss factor.')
    parser.add_argument('--center_loss_alfa', type=float, default=0.95, help='Center update rate for center loss.')
    parser.add_argument('--prelogits_norm_loss_factor', type=float, default=0.0,
                           help='Loss based on the norm of the activations in the prelogits layer.')
    parser.add_argument('--prelogits_norm_p', type=float, default=1.0,
                           help='Norm to use for prelogits norm loss.')
    parser.add_argument('--prelogits_hist_max', type=float, default=10.0,
                           help='The max value for the prelogits histogram (stat.h5).')
    parser.add_argument('--log_histograms', action='store_true',
                           help='Enables logging of weight/bias histograms in tensorboard.')
    parser.add_argument('--filter_filename', type=str, default='',
                           help='HDF5 file (distance_to_center, label_list, image_list) used to filter the dataset.')
    parser.add_argument('--filter_percentile', type=float, default=100.0,
                           help='Keep only the images whose distance to their class center is below this percentile.')
    parser.add_argument('--filter_min_nrof_images_per_class', type=int, default=0,
                           help='Keep only the classes with this number of images or more after filtering.')
    parser.add_argument('--validate_every_n_epochs', type=int, default=5,
                           help='Number of epochs between validations.')
    parser.add_argument('--validation_set_split_ratio', type=float, default=0.0,
                           help='Share of each class\'s images used for validation (0: no validation).')
    parser.add_argument('--min_nrof_val_images_per_class', type=float, default=0,
                           help='Classes with fewer training images than this after the split are left out.')
    parser.add_argument('--lfw_batch_size', type=int, default=100,
                           help='Images per batch for LFW and validation embeddings.')
    return training.parse_with_config(parser, argv)



def console_main():
    """The `facenet-train-softmax` command (also `python -m facenet_tf.train_softmax`)."""
    return command(main, parse_arguments)


def __getattr__(name):
    if name in RUN_NAMES:
        from facenet_tf.training import softmax_tool
        return getattr(softmax_tool, name)
    raise AttributeError('module %r has no attribute %r' % (__name__, name))


if __name__ == '__main__':
    sys.exit(console_main())
