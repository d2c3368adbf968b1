"""The one epoch loop of both training scripts.

Per epoch: the learning rate (--learning_rate, or the schedule file, whose negative rate ends
training), the script's epoch (`EpochStrategy.train_epoch`), a checkpoint, the verification check of
every target every --lfw_every_n_epochs epochs and after the last one (lfw_check.py; the best
checkpoint on the first target kept in `best/`), then the script's `after_epoch`. Ctrl-C saves a
checkpoint (exit 130), a NaN or infinite loss stops with the last good checkpoint named (exit 1), a
failed input pipeline becomes one FaceNetError line.

A script supplies what differs as an EpochStrategy: its epoch numbering and checkpoint numbering,
its epoch of training steps, and what it records after an epoch or when stopped early. Everything
reads the run's typed configuration (config.TrainingConfig), not the flags."""
import dataclasses
import itertools
import sys
import time
from typing import Any, Optional

import numpy as np

from facenet_tf.errors import FaceNetError
from facenet_tf.tf_setup import configure, require_precision
from facenet_tf.training import distributed
from facenet_tf.training.checkpoints import (BestCheckpoint, latest_state, readable_checkpoint, save_checkpoint,
                                             save_state)
from facenet_tf.training.flags import RunFolders, import_network, schedule_from_args, start_run
from facenet_tf.training.lfw_check import checks_from_config, run_checks, trim_lfw_results
from facenet_tf.training.schedule import rate_for_epoch
from facenet_tf.training.session import (TrainingDiverged, input_error, run_train_step, session_config_of,
                                         training_session)

tf = configure()  # TensorFlow set up for TF1 graphs (see facenet_tf.tf_setup)


@dataclasses.dataclass(eq=False)
class Run:
    """A training run in progress: configuration, session, graph, folders, schedule, checks, checkpoints."""
    config: Any                         # a config.TrainingConfig
    sess: Any
    graph: Any                          # a graph.TrainingGraph
    summary_writer: Any
    coord: Any                          # the queue runners' Coordinator
    folders: RunFolders
    schedule: Optional[list] = None     # [(epoch, rate)] with --learning_rate <= 0
    checks: list = dataclasses.field(default_factory=list)    # lfw_check.VerificationCheck per target
    last_checkpoint: Optional[str] = None
    best: Optional[BestCheckpoint] = None
    step_options: Any = None            # RunOptions of a training step (the timeout of sync replicas)
    steps_run: int = 0                  # training steps this process has run
    continued: bool = False             # the run continues from its training state (--resume)

    def train_step(self, names, feed, epoch, with_summary):
        """One training step fetching the graph's `names` (see session.run_train_step). In a cluster
        the cluster's training ends when the global step reaches max_nrof_epochs * epoch_size
        (distributed.ClusterFinished)."""
        if self.graph.cluster is not None:
            distributed.check_finished(self.global_step(), self.config.max_nrof_epochs * self.config.epoch_size)
        self.steps_run += 1
        return run_train_step(self.sess, self.graph, names, feed, epoch, self.summary_writer, with_summary,
                              self.last_checkpoint, self.step_options)

    def global_step(self):
        return int(self.sess.run(self.graph.global_step))

    @property
    def is_chief(self):
        """True when this process writes checkpoints and summaries (always, but in a cluster)."""
        return self.graph.cluster is None or self.graph.cluster.is_chief

    def save_checkpoint(self, number):
        """`model-<subdir>.ckpt-<number>` (the .meta once); returns its prefix (None on a worker
        that is not the chief: it saves nothing)."""
        if not self.is_chief:
            return None
        return save_checkpoint(self.sess, self.graph.saver, self.summary_writer, self.folders.model_dir,
                               self.folders.subdir, number)

    def save_state(self, step):
        """The training state a run continues from (chief only), once the epoch's records are written;
        the summaries are flushed first so the events up to `step` are on disk with it."""
        if self.is_chief:
            self.summary_writer.flush()
            save_state(self.sess, self.graph.state_saver, self.folders.model_dir, step)


class EpochStrategy(object):
    """What a training script does in the epoch loop (override the methods marked so)."""
    lfw_batch_size = 100        # images per batch of the verification check
    stops_at_zero_rate = False  # a schedule rate of exactly 0 ends training too
    first_epoch = 0             # the number of a run's first epoch

    def epochs(self, config, step):
        """The epoch numbers to run, from the global step the run starts at (override)."""
        raise NotImplementedError

    def train_epoch(self, run, epoch, learning_rate):
        """One epoch of training steps; returns the global step reached (override)."""
        raise NotImplementedError

    def checkpoint_number(self, epoch, step):
        """The number in the checkpoint name: the global step by default."""
        return step

    def after_epoch(self, run, epoch, step, lfw_result, lfw_seconds):
        """After the checkpoint and the check (the first target's (accuracy, val), or None when the
        check did not run this epoch); return False to stop."""
        return True

    def on_abort(self, run):
        """Training stops early (Ctrl-C or divergence): save what must not be lost."""

    def continue_at(self, run, step):
        """A run continued from its training state at global `step`: take up the records the earlier
        run wrote up to that step (override)."""

    def done_line(self, run, epoch, step, minutes):
        return 'Training done: %d steps, %.1f min; model saved in %s' % (step, minutes, run.folders.model_dir)


def run_epochs(run, strategy):
    """Train epoch after epoch until the last one, the schedule's end or the strategy's stop; in a
    cluster until the cluster's last update (a worker done with its epochs repeats the last one).
    Returns the exit code: 0, 130 (Ctrl-C, checkpoint saved) or 1 (diverged)."""
    config = run.config
    step = run.global_step()
    if run.continued and run.is_chief:
        strategy.continue_at(run, step)
        trim_lfw_results(run.folders.log_dir, step, [check.name for check in run.checks])
    epochs = strategy.epochs(config, step)
    epoch = epochs.start - 1
    last_epoch = config.max_nrof_epochs - 1 + strategy.first_epoch
    if run.graph.cluster is not None:   # a worker trains until the cluster's last update (ClusterFinished)
        epochs = itertools.chain(epochs, itertools.repeat(epochs[-1] if len(epochs) else epoch))
    start = time.time()
    try:
        for epoch in epochs:
            lr = rate_for_epoch(config, run.schedule, epoch)
            if lr < 0 or (lr == 0 and strategy.stops_at_zero_rate):
                print('Learning rate schedule %s ends training at epoch %d' % (config.learning_rate_schedule_file,
                                                                               epoch))
                break
            step = strategy.train_epoch(run, epoch, lr)
            run.last_checkpoint = run.save_checkpoint(strategy.checkpoint_number(epoch, step))
            lfw_start = time.time()
            lfw_result = None
            if run.checks and ((epoch - strategy.first_epoch + 1) % config.lfw_every_n_epochs == 0
                               or epoch >= last_epoch):
                lfw_result = run_checks(config, run.sess, run.graph, run.checks, strategy.lfw_batch_size, step,
                                        run.summary_writer, run.folders.log_dir)[0]
            lfw_seconds = time.time() - lfw_start
            if lfw_result is not None and run.best is not None:
                run.best.update(run.last_checkpoint, *lfw_result)
            go_on = strategy.after_epoch(run, epoch, step, lfw_result, lfw_seconds)
            run.save_state(step)
            if not go_on:
                break
    except KeyboardInterrupt:
        step = run.global_step()
        path = run.save_checkpoint(strategy.checkpoint_number(epoch, step))
        strategy.on_abort(run)
        sys.stderr.write('interrupted: checkpoint saved to %s\n' % path)
        return 130
    except TrainingDiverged as e:
        strategy.on_abort(run)
        sys.stderr.write('error: %s\n' % e)
        return 1
    except (distributed.ClusterFinished, tf.errors.DeadlineExceededError) as e:
        step = run.global_step()
        print('%s: training ends at global step %d (%d steps run here)' % (
            e if isinstance(e, distributed.ClusterFinished) else 'A step waited %g s for the other workers, which '
            'have finished' % config.replica_step_timeout, step, run.steps_run))
        run.last_checkpoint = run.save_checkpoint(strategy.checkpoint_number(epoch, step))
        run.save_state(step)
    except (tf.errors.OutOfRangeError, tf.errors.CancelledError) as e:
        raise input_error(run.coord, e)
    minutes = (time.time() - start) / 60.0
    print(strategy.done_line(run, epoch, step, minutes) if run.is_chief else
          'Worker done at global step %d, %.1f min; the chief saves the model in %s'
          % (step, minutes, run.folders.model_dir))
    return 0


def train(config, graph, strategy, folders, schedule=None, checks=()):
    """Open the training session on `graph` and run the epoch loop; returns the exit code. A run
    continued with --resume (folders.resume) starts from its latest training state. In a cluster only
    the chief runs the checks (lfw_check.VerificationCheck per target)."""
    state = latest_state(folders.model_dir) if folders.resume else None
    with training_session(config, graph, folders.log_dir, state) as (sess, summary_writer, coord):
        run = Run(config, sess, graph, summary_writer, coord, folders, schedule, continued=state is not None)
        if run.is_chief and checks:
            run.checks, run.best = list(checks), BestCheckpoint(folders.model_dir, folders.subdir)
        if graph.replicas is not None and config.replica_step_timeout > 0:
            run.step_options = tf.compat.v1.RunOptions(timeout_in_ms=int(config.replica_step_timeout * 1000))
        return run_epochs(run, strategy)


def begin(config):
    """The first steps of a script's main after its flag checks: a parameter-server task of a
    cluster (TF_CONFIG) serves its variables here and never returns, a worker waits for the parameter
    servers (--cluster_wait_timeout); else the network module, the learning-rate schedule (or None),
    and numpy seeded with --seed. A --precision this machine cannot run is refused first.
    Returns (network, schedule)."""
    require_precision(config.precision)
    cluster = distributed.from_environment()
    if cluster is not None:
        if not config.run_name:
            raise FaceNetError('training in a cluster (TF_CONFIG is set) needs --run_name, the same for every task')
        if cluster.task_type == 'ps':
            distributed.serve_parameters(cluster, session_config_of(config))
        distributed.wait_for_parameter_servers(cluster, config.cluster_wait_timeout)
    network = import_network(config.model_def)
    schedule = schedule_from_args(config)
    np.random.seed(seed=config.seed)
    return network, schedule


def open_run(config, script_file):
    """After the training set is loaded: the check's targets (loaded: a bad one fails here), the
    --pretrained_model check, and the run folders with their records (an existing run refused, or
    continued with --resume). Returns ([VerificationCheck], RunFolders)."""
    checks = checks_from_config(config)
    if config.pretrained_model:
        readable_checkpoint(config.pretrained_model)
    cluster = distributed.from_environment()
    return checks, start_run(config, script_file, cluster is None or cluster.is_chief)


def train_in_new_graph(config, build_graph, strategy, folders, schedule, checks, records=None):
    """build_graph() in a new default graph, then train(); the record file is closed at the end."""
    with tf.Graph().as_default():
        try:
            graph = build_graph()
            return train(config, graph, strategy, folders, schedule, checks)
        finally:
            if records is not None:
                records.close()
