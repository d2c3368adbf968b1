"""The flags both training scripts share, recipe files (`--config`), and starting a run: the network
module, the learning-rate schedule, the run folders and the records of how the run was started.

A recipe file is TOML whose keys are flag names without the dashes (`max_nrof_epochs = 60`,
`random_flip = true`); it is read with tomllib and its values go in front of the command line, so a
flag given on the command line wins. A key that is no flag of the script is an error."""
import argparse
import importlib
import os
import sys
import tomllib
from datetime import datetime
from typing import NamedTuple

from facenet_tf import cli, precision, run_info
from facenet_tf.errors import FaceNetError
from facenet_tf.files import TEMPORARY_RE
from facenet_tf.training.config import OPTIMIZERS
from facenet_tf.training.schedule import read_learning_rate_schedule, read_text_file


class RunFolders(NamedTuple):
    subdir: str         # the run's name, a %Y%m%d-%H%M%S timestamp
    log_dir: str        # <logs_base_dir>/<subdir>
    model_dir: str      # <models_base_dir>/<subdir>
    resume: bool = False    # an existing run continues (--resume): restore its training state


def add_common_arguments(parser, max_nrof_epochs, batch_size_extra=''):
    """The flags both training scripts share, with the classic names, order and defaults."""
    _add_run_arguments(parser)
    _add_image_arguments(parser, max_nrof_epochs, batch_size_extra)
    _add_optimizer_arguments(parser)
    _add_lfw_arguments(parser)
    return parser


def _add_run_arguments(parser):
    parser.add_argument('--logs_base_dir', type=str, default='~/logs/facenet',
                        help='Directory where to write event logs.')
    parser.add_argument('--models_base_dir', type=str, default='~/models/facenet',
                        help='Directory where to write trained models and checkpoints.')
    cli.add_gpu_memory_arguments(parser)
    parser.add_argument('--num_gpus', type=cli.positive_int, default=1,
                        help='Towers: the batch is split over this many GPUs (logical CPU devices without GPUs), '
                        'their gradients averaged before one update.')
    precision.add_training_precision_argument(parser)
    parser.add_argument('--run_name', type=str, default=None,
                        help='Name of the run\'s log and model folders (default: a %%Y%%m%%d-%%H%%M%%S timestamp); '
                        'the tasks of a cluster (TF_CONFIG) need the same name. An existing run is never '
                        'overwritten: it is refused, or continued with --resume.')
    parser.add_argument('--resume', action='store_true',
                        help='Continue the run --run_name from its latest training state (saved after every '
                        'epoch: weights, optimizer slots, moving averages, global step); starts it when it does '
                        'not exist yet.')
    parser.add_argument('--cluster_wait_timeout', type=cli.non_negative_float, default=600.0,
                        help='In a cluster (TF_CONFIG): seconds to wait for the parameter servers to accept '
                        'connections (and a worker for the chief to initialise the variables) before giving up '
                        '(0: wait forever).')
    parser.add_argument('--replica_updates', type=str, choices=['sync', 'async'], default='sync',
                        help='In a cluster (TF_CONFIG): average one gradient of each worker per update (sync, '
                        'SyncReplicasOptimizer) or let each worker update on its own (async).')
    parser.add_argument('--replica_step_timeout', type=cli.non_negative_float, default=60.0,
                        help='In a cluster with sync updates: a step waiting this many seconds for the other '
                        'workers (which have finished) ends this worker\'s training (0: wait forever).')
    parser.add_argument('--pretrained_model', type=str,
                        help='Model folder or checkpoint prefix to start from (Logits* and mismatched shapes skipped).')
    parser.add_argument('--data_dir', type=str, default='~/datasets/casia/casia_maxpy_mtcnnalign_182_160',
                        help='Path to the data directory with aligned face patches (several joined by ":"), '
                        'or a folder holding train.rec + train.idx.')
    parser.add_argument('--model_def', type=str, default='models.inception_resnet_v1',
                        help='Model definition module (e.g. models.inception_resnet_v1).')


def _add_image_arguments(parser, max_nrof_epochs, batch_size_extra):
    parser.add_argument('--max_nrof_epochs', type=int, default=max_nrof_epochs, help='Number of epochs to run.')
    parser.add_argument('--batch_size', type=int, default=90, help='Images per batch%s.' % batch_size_extra)
    parser.add_argument('--image_size', type=int, default=160, help='Image size (height, width) in pixels.')
    parser.add_argument('--epoch_size', type=int, default=1000, help='Training steps per epoch.')
    parser.add_argument('--embedding_size', type=int, default=128, help='Dimensionality of the embedding.')
    parser.add_argument('--random_crop', action='store_true',
                        help='Random crops of image_size from larger training images (else a central crop/pad).')
    parser.add_argument('--random_flip', action='store_true', help='Random horizontal flips of training images.')
    parser.add_argument('--random_rotate', action='store_true',
                        help='Random rotations (+-10 degrees) of training images.')
    parser.add_argument('--random_erase', action='store_true',
                        help='Random erasing: half of the training images get a random rectangle of noise.')
    cli.add_standardization_argument(parser)


def _add_optimizer_arguments(parser):
    parser.add_argument('--keep_probability', type=float, default=1.0,
                        help='Keep probability of dropout for the fully connected layer(s).')
    parser.add_argument('--weight_decay', type=float, default=0.0, help='L2 weight regularization.')
    parser.add_argument('--optimizer', type=str, choices=list(OPTIMIZERS), default='ADAGRAD',
                        help='The optimization algorithm to use.')
    parser.add_argument('--learning_rate', type=float, default=0.1,
                        help='Initial learning rate; <= 0 reads --learning_rate_schedule_file.')
    parser.add_argument('--learning_rate_decay_epochs', type=int, default=100,
                        help='Number of epochs between learning rate decays.')
    parser.add_argument('--learning_rate_decay_factor', type=float, default=1.0, help='Learning rate decay factor.')
    parser.add_argument('--moving_average_decay', type=float, default=0.9999,
                        help='Exponential decay for tracking of training parameters.')
    parser.add_argument('--seed', type=int, default=666, help='Random seed.')
    parser.add_argument('--nrof_preprocess_threads', type=int, default=4, help='Image preprocessing threads.')
    parser.add_argument('--learning_rate_schedule_file', type=str, default='data/learning_rate_schedule.txt',
                        help='File of "epoch: learning_rate" lines, used when --learning_rate <= 0.')


def _add_lfw_arguments(parser):
    parser.add_argument('--lfw_pairs', type=str, default='data/pairs.txt',
                        help='The LFW pairs file (View 2 pairs.txt or View 1 pairsDevTest.txt).')
    parser.add_argument('--lfw_dir', type=str, default='', help='Path to the aligned LFW face patches.')
    parser.add_argument('--lfw_nrof_folds', type=int, default=10, help='Number of folds for the LFW check.')
    parser.add_argument('--lfw_distance_metric', type=int, default=0, choices=[0, 1],
                        help='LFW distance: 0 squared Euclidean, 1 cosine (angular).')
    parser.add_argument('--lfw_use_flipped_images', action='store_true',
                        help='Concatenate the embeddings of each LFW image and of its mirror image.')
    parser.add_argument('--lfw_subtract_mean', action='store_true',
                        help='Subtract the feature mean before computing LFW distances.')
    parser.add_argument('--lfw_use_moving_averages', action='store_true',
                        help='Run the LFW check with the moving averages of the weights (--moving_average_decay) '
                        'instead of their current values.')
    parser.add_argument('--val_set', type=str, action='append', default=None, metavar='NAME=PATH',
                        help='Another target of the per-epoch check (repeat for several): NAME=FILE.bin (insightface '
                        'layout) or NAME=FOLDER,PAIRS_FILE; checked as LFW is (the --lfw_* flags), after it. The '
                        'best checkpoint is chosen on the first target (--lfw_dir, else the first --val_set).')
    parser.add_argument('--lfw_every_n_epochs', type=cli.positive_int, default=1,
                        help='Run the per-epoch check (every target) every this many epochs, and after the last one.')


# ---------------------------------------------------------------- recipe files

def read_config(filename):
    """The {key: value} table of a TOML recipe file (read bounded, text only: see read_text_file)."""
    text = read_text_file(filename, 'config')
    try:
        return tomllib.loads(text)
    except (tomllib.TOMLDecodeError, ValueError, RecursionError) as e:   # ValueError: an integer of 4300+ digits
        raise FaceNetError('config file %s: %s' % (filename, str(e).splitlines()[0][:200] if str(e)
                                                   else type(e).__name__))


def _config_value(filename, key, action, value):
    """The command-line text of a recipe value, checked as argparse would check it on the command line
    (type and choices), so a wrong value names the recipe file and its key."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise FaceNetError('config file %s: %s must be a number or a string, not %s' % (filename, key,
                                                                                      type(value).__name__))
    text = str(value)
    if action.type is not None:
        try:
            converted = action.type(text)
        except argparse.ArgumentTypeError as e:
            raise FaceNetError('config file %s: %s = %s: %s' % (filename, key, text[:40], e))
        except (TypeError, ValueError):
            raise FaceNetError('config file %s: %s = %s: invalid %s value' % (filename, key, text[:40],
                                                                             action.type.__name__))
    else:
        converted = text
    if action.choices is not None and converted not in action.choices:
        raise FaceNetError('config file %s: %s = %s is not one of %s' % (filename, key, text[:40],
                                                                      ', '.join(map(str, action.choices))))
    return text


def config_argv(parser, filename):
    """The command-line tokens equivalent to a recipe file, checked against the parser's flags."""
    actions = {a.dest: a for a in parser._actions if a.option_strings and a.dest not in ('help', 'config')}
    argv = []
    for key, value in read_config(filename).items():
        action = actions.get(key)
        if action is None:
            raise FaceNetError('config file %s: unknown key %r (not a flag of this script)' % (filename, key[:40]))
        if isinstance(action, argparse._AppendAction) and isinstance(value, list):   # a repeatable flag
            argv += [token for item in value
                     for token in (action.option_strings[0], _config_value(filename, key, action, item))]
        elif action.nargs == 0:                              # store_true
            if not isinstance(value, bool):
                raise FaceNetError('config file %s: %s must be true or false' % (filename, key))
            argv += [action.option_strings[0]] if value else []
        else:
            argv += [action.option_strings[0], _config_value(filename, key, action, value)]
    return argv


def parse_with_config(parser, argv):
    """Add --config (the last flag) to the script's parser, then parser.parse_args(argv) with the
    values of the recipe file (if given) in front of argv."""
    parser.add_argument('--config', type=str, default=None,
                        help='TOML recipe file of flag values (keys are flag names without the dashes); flags on '
                        'the command line override it.')
    args = parser.parse_args(argv)
    if args.config:
        args = parser.parse_args(config_argv(parser, args.config) + list(argv))
    return args


# ---------------------------------------------------------------- starting a run

def import_network(model_def):
    """The network module named by --model_def: the classic spelling models.<name> is the package's
    facenet_tf.models.<name> (found without src/ on the path); any other importable module as given."""
    if model_def.startswith('models.'):
        try:
            return importlib.import_module('facenet_tf.' + model_def)
        except ModuleNotFoundError:
            pass
    try:
        return importlib.import_module(model_def)
    except ImportError as e:
        raise FaceNetError('cannot import the model definition %s: %s' % (model_def, e))


def schedule_from_args(config):
    """The learning-rate schedule when --learning_rate <= 0 asks for the schedule file, else None."""
    if config.learning_rate <= 0.0:
        return read_learning_rate_schedule(config.learning_rate_schedule_file)
    return None


def run_folders(logs_base_dir, models_base_dir, subdir=None, resume=False):
    """RunFolders of a run (nothing created); subdir defaults to a timestamp."""
    subdir = subdir or datetime.strftime(datetime.now(), '%Y%m%d-%H%M%S')
    return RunFolders(subdir, os.path.join(os.path.expanduser(logs_base_dir), subdir),
                      os.path.join(os.path.expanduser(models_base_dir), subdir), resume)


def create_run_dirs(logs_base_dir, models_base_dir, subdir=None, resume=False):
    """RunFolders (subdir, log_dir, model_dir, resume), both folders created; subdir defaults to a timestamp."""
    folders = run_folders(logs_base_dir, models_base_dir, subdir, resume)
    for folder in (folders.log_dir, folders.model_dir):
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as e:
            raise FaceNetError('cannot create folder %s: %s' % (folder, e.strerror or e))
    return folders


RECORD_FILES = ('arguments.txt', 'revision_info.txt')  # what every task of a cluster writes at its start


def run_exists(folders):
    """True when a run wrote something in these folders already: any entry of the model folder, or
    of the log folder but the records every task of a cluster writes at its start (temporary files
    of atomic writes in progress are not counted)."""
    for folder, ignored in ((folders.model_dir, ()), (folders.log_dir, RECORD_FILES)):
        if os.path.isdir(folder) and any(name not in ignored and not TEMPORARY_RE.match(name)
                                         for name in os.listdir(folder)):
            return True
    return False


def start_run(config, script_file, is_chief=True):
    """Create the run's log and model folders, print them, and record how the run was started.
    An existing run (run_exists) is refused unless --resume asks to continue it (its records are then
    left as they are); a worker of a cluster that is not the chief (is_chief False) joins the run of
    the chief. Returns RunFolders (subdir, log_dir, model_dir, resume)."""
    from facenet_tf.training.checkpoints import STATE_FOLDER, checkpoint_files, latest_state
    resume, name = config.resume, config.run_name
    if resume and not name:
        raise FaceNetError('--resume needs --run_name (the name of the run to continue)')
    if name is not None and (not name.strip() or name in ('.', '..') or '/' in name or os.sep in name
                             or not name.isprintable()):
        raise FaceNetError('--run_name %r: a run name is one folder name (no path separator, not . or ..)' % name[:60])
    folders = run_folders(config.logs_base_dir, config.models_base_dir, name)
    exists = run_exists(folders)
    if exists and not resume and is_chief:
        raise FaceNetError('%s: the run %s exists already (training again would overwrite its checkpoints); '
                           '--resume continues it from its latest checkpoint, or choose another --run_name'
                           % (folders.model_dir, folders.subdir))
    if exists and resume and is_chief and latest_state(folders.model_dir) is None \
            and checkpoint_files(folders.model_dir):
        raise FaceNetError('%s: the run %s has checkpoints but no training state to continue from (%s/); start a new '
                           'run from its weights with --pretrained_model %s' % (folders.model_dir, folders.subdir,
                                                                                STATE_FOLDER, folders.model_dir))
    folders = create_run_dirs(config.logs_base_dir, config.models_base_dir, folders.subdir, resume and exists)
    print('Model directory: %s' % folders.model_dir)
    print('Log directory: %s' % folders.log_dir)
    if resume and not exists:
        print('No run %s to continue: starting it' % folders.subdir)
    if not folders.resume:
        run_info.store_revision_info(os.path.dirname(os.path.abspath(script_file)), folders.log_dir,
                                     ' '.join(sys.argv))
        run_info.write_arguments_to_file(config.flag_namespace(), os.path.join(folders.log_dir, 'arguments.txt'))
    return folders
