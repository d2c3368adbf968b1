"""What every training script shares, one module per concern:

- schedule: learning-rate schedule files, the rate of an epoch, the in-graph staircase decay;
- optimizers: the classic optimizers, loss averages, the train op, MovingAverageSwap;
- checkpoints: saving in the classic layout, the best-checking checkpoint (`best/`), pretrained restore;
- session: the training session and queue runners, one training step, divergence, input errors;
- lfw_check: the per-epoch verification check (LFW and --val_set targets) through the training pipeline;
- flags: the shared flags, recipe files (--config), starting a run (folders, records);
- config: the typed configuration (TrainingConfig) built from the flags at the script boundary;
- graph: the typed training graph (TrainingGraph) both scripts build, with its towers (TowerLoss);
- towers: --num_gpus data-parallel towers (devices, batch slices, averaged gradients);
- progress: the epoch's progress lines;
- loop: the one epoch loop (Run, EpochStrategy, run_epochs, train).

Layout of a run (classic): `<logs_base_dir>/<subdir>` holds the TensorBoard events,
`revision_info.txt`, `arguments.txt` and `lfw_result.txt` (and `<name>_result.txt` per --val_set
target); `<models_base_dir>/<subdir>` holds `model-<subdir>.meta` and `model-<subdir>.ckpt-<n>` (and
`best/` with a per-epoch check);
subdir is a `%Y%m%d-%H%M%S` timestamp.

The package imports nothing on its own: the names below load their module (and TensorFlow, for most)
on first use, so the scripts read their flags and answer --help before TensorFlow loads.
"""
import importlib

_EXPORTS = {
    'checkpoints': ('BEST_FOLDER', 'CLASSIFIER_SCOPE_PREFIX', 'BestCheckpoint', 'checkpoint_prefix',
        'restore_pretrained', 'save_checkpoint'),
    'config': ('OPTIMIZERS', 'TrainingConfig'),
    'flags': ('RunFolders', 'add_common_arguments', 'config_argv', 'create_run_dirs', 'import_network',
        'parse_with_config', 'read_config', 'schedule_from_args', 'start_run'),
    'graph': ('TowerLoss', 'TrainingGraph', 'add_run_ops', 'build_training_graph', 'train_control'),
    'lfw_check': ('LfwCheck', 'VerificationCheck', 'checks_from_config', 'embed_lfw',
        'embed_through_pipeline', 'pipeline_reader', 'run_checks'),
    'loop': ('EpochStrategy', 'Run', 'begin', 'open_run', 'run_epochs', 'train', 'train_in_new_graph'),
    'optimizers': ('MovingAverageSwap', 'add_loss_summaries', 'build_train_op', 'make_optimizer'),
    'progress': ('EpochProgress',),
    'schedule': ('get_learning_rate_from_file', 'learning_rate_for_epoch', 'learning_rate_tensor',
        'rate_for_epoch', 'read_learning_rate_schedule'),
    'session': ('TrainingDiverged', 'add_summary', 'check_loss', 'input_error',
        'is_non_finite_summary_error', 'run_train_step', 'session_config_of', 'start_queue_runners',
        'stop_queue_runners', 'training_session'),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name):
    if name in _MODULE_OF:
        value = getattr(importlib.import_module('facenet_tf.training.' + _MODULE_OF[name]), name)
        globals()[name] = value
        return value
    raise AttributeError('module %r has no attribute %r' % (__name__, name))
