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
"""
from facenet_tf.training.checkpoints import (BEST_FOLDER, CLASSIFIER_SCOPE_PREFIX, BestCheckpoint,  # noqa: F401
                                             checkpoint_prefix, restore_pretrained, save_checkpoint)
from facenet_tf.training.config import TrainingConfig  # noqa: F401
from facenet_tf.training.flags import (RunFolders, add_common_arguments, config_argv, create_run_dirs,  # noqa: F401
                                       import_network, parse_with_config, read_config, schedule_from_args,
                                       start_run)
from facenet_tf.training.graph import (TowerLoss, TrainingGraph, add_run_ops, build_training_graph,  # noqa: F401
                                       train_control)
from facenet_tf.training.lfw_check import (LfwCheck, VerificationCheck, checks_from_config,  # noqa: F401
                                           embed_lfw, embed_through_pipeline, pipeline_reader, run_checks)
from facenet_tf.training.loop import (EpochStrategy, Run, begin, open_run, run_epochs, train,  # noqa: F401
                                      train_in_new_graph)
from facenet_tf.training.optimizers import (OPTIMIZERS, MovingAverageSwap, add_loss_summaries,  # noqa: F401
                                            build_train_op, make_optimizer)
from facenet_tf.training.progress import EpochProgress  # noqa: F401
from facenet_tf.training.schedule import (get_learning_rate_from_file, learning_rate_for_epoch,  # noqa: F401
                                          learning_rate_tensor, rate_for_epoch, read_learning_rate_schedule)
from facenet_tf.training.session import (TrainingDiverged, add_summary, check_loss, input_error,  # noqa: F401
                                         is_non_finite_summary_error, run_train_step, session_config_of,
                                         start_queue_runners, stop_queue_runners, training_session)
