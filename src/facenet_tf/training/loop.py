"""The one epoch loop of both training scripts.

Per epoch: the learning rate (--learning_rate, or the schedule file, whose negative rate ends
training), the script's epoch (`EpochStrategy.train_epoch`), a checkpoint, the LFW check (and the
best checkpoint kept in `best/`), then the script's `after_epoch`. Ctrl-C saves a checkpoint (exit
130), a NaN or infinite loss stops with the last good checkpoint named (exit 1), a failed input
pipeline becomes one UserError line.

A script supplies what differs as an EpochStrategy: its epoch numbering and checkpoint numbering,
its epoch of training steps, and what it records after an epoch or when stopped early."""
import dataclasses
import itertools
import sys
import time
from typing import Any, Optional

import numpy as np

from facenet_tf.cli import UserError
from facenet_tf.tf_setup import configure, session_config_from_args
from facenet_tf.training import distributed
from facenet_tf.training.checkpoints import BestCheckpoint, checkpoint_prefix, save_checkpoint
from facenet_tf.training.flags import RunFolders, import_network, schedule_from_args, start_run
from facenet_tf.training.lfw_check import LfwCheck, lfw_check_from_args, run_lfw_check
from facenet_tf.training.schedule import rate_for_epoch
from facenet_tf.training.session import TrainingDiverged, input_error, run_train_step, training_session

tf = configure()  # TensorFlow set up for TF1 graphs (see facenet_tf.tf_setup)


@dataclasses.dataclass(eq=False)
class Run:
    """A training run in progress: flags, session, graph, folders, schedule, LFW check, checkpoints."""
    args: Any                           # the parsed flags
    sess: Any
    graph: Any                          # a graph.TrainingGraph
    summary_writer: Any
    coord: Any                          # the queue runners' Coordinator
    folders: RunFolders
    schedule: Optional[list] = None     # [(epoch, rate)] with --learning_rate <= 0
    lfw_check: Optional[LfwCheck] = None
    last_checkpoint: Optional[str] = None
    best: Optional[BestCheckpoint] = None
    step_options: Any = None            # RunOptions of a training step (the timeout of sync replicas)
    steps_run: int = 0                  # training steps this process has run

    def train_step(self, names, feed, epoch, with_summary):
        """One training step fetching the graph's `names` (see session.run_train_step). In a cluster
        the cluster's training ends when the global step reaches max_nrof_epochs * epoch_size
        (distributed.ClusterFinished)."""
        if self.graph.cluster is not None:
            distributed.check_finished(self.global_step(), self.args.max_nrof_epochs * self.args.epoch_size)
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


class EpochStrategy(object):
    """What a training script does in the epoch loop (override the methods marked so)."""
    lfw_batch_size = 100        # images per batch of the LFW check
    stops_at_zero_rate = False  # a schedule rate of exactly 0 ends training too

    def epochs(self, args, step):
        """The epoch numbers to run, from the global step the run starts at (override)."""
        raise NotImplementedError

    def train_epoch(self, run, epoch, learning_rate):
        """One epoch of training steps; returns the global step reached (override)."""
        raise NotImplementedError

    def checkpoint_number(self, epoch, step):
        """The number in the checkpoint name: the global step by default."""
        return step

    def after_epoch(self, run, epoch, step, lfw_result, lfw_seconds):
        """After the checkpoint and LFW check ((accuracy, val) or None); return False to stop."""
        return True

    def on_abort(self, run):
        """Training stops early (Ctrl-C or divergence): save what must not be lost."""

    def done_line(self, run, epoch, step, minutes):
        return 'Training done: %d steps, %.1f min; model saved in %s' % (step, minutes, run.folders.model_dir)


def run_epochs(run, strategy):
    """Train epoch after epoch until the last one, the schedule's end or the strategy's stop; in a
    cluster until the cluster's last update (a worker done with its epochs repeats the last one).
    Returns the exit code: 0, 130 (Ctrl-C, checkpoint saved) or 1 (diverged)."""
    args = run.args
    step = run.global_step()
    epochs = strategy.epochs(args, step)
    epoch = epochs.start - 1
    if run.graph.cluster is not None:   # a worker trains until the cluster's last update (ClusterFinished)
        epochs = itertools.chain(epochs, itertools.repeat(epochs[-1] if len(epochs) else epoch))
    start = time.time()
    try:
        for epoch in epochs:
            lr = rate_for_epoch(args, run.schedule, epoch)
            if lr < 0 or (lr == 0 and strategy.stops_at_zero_rate):
                print('Learning rate schedule %s ends training at epoch %d' % (args.learning_rate_schedule_file, epoch))
                break
            step = strategy.train_epoch(run, epoch, lr)
            run.last_checkpoint = run.save_checkpoint(strategy.checkpoint_number(epoch, step))
            lfw_start = time.time()
            lfw_result = None
            if run.lfw_check is not None:
                lfw_result = run_lfw_check(args, run.sess, run.graph, run.lfw_check, strategy.lfw_batch_size, step,
                                           run.summary_writer, run.folders.log_dir)
            lfw_seconds = time.time() - lfw_start
            if lfw_result is not None and run.best is not None:
                run.best.update(run.last_checkpoint, *lfw_result)
            if not strategy.after_epoch(run, epoch, step, lfw_result, lfw_seconds):
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
            'have finished' % run.args.replica_step_timeout, step, run.steps_run))
        run.last_checkpoint = run.save_checkpoint(strategy.checkpoint_number(epoch, step))
    except (tf.errors.OutOfRangeError, tf.errors.CancelledError) as e:
        raise input_error(run.coord, e)
    minutes = (time.time() - start) / 60.0
    print(strategy.done_line(run, epoch, step, minutes) if run.is_chief else
          'Worker done at global step %d, %.1f min; the chief saves the model in %s'
          % (step, minutes, run.folders.model_dir))
    return 0


def train(args, graph, strategy, folders, schedule=None, lfw_check=None):
    """Open the training session on `graph` and run the epoch loop; returns the exit code. In a
    cluster only the chief runs the LFW check."""
    with training_session(args, graph, folders.log_dir, folders.model_dir) as (sess, summary_writer, coord):
        run = Run(args, sess, graph, summary_writer, coord, folders, schedule)
        if run.is_chief and lfw_check is not None:
            run.lfw_check, run.best = lfw_check, BestCheckpoint(folders.model_dir, folders.subdir)
        if graph.replicas is not None and args.replica_step_timeout > 0:
            run.step_options = tf.compat.v1.RunOptions(timeout_in_ms=int(args.replica_step_timeout * 1000))
        return run_epochs(run, strategy)


def begin(args):
    """The first steps of a script's main after its flag checks: a parameter-server task of a
    cluster (TF_CONFIG) serves its variables here and never returns; else the network module, the
    learning-rate schedule (or None), and numpy seeded with --seed. Returns (network, schedule)."""
    cluster = distributed.from_environment()
    if cluster is not None:
        if not getattr(args, 'run_name', None):
            raise UserError('training in a cluster (TF_CONFIG is set) needs --run_name, the same for every task')
        if cluster.task_type == 'ps':
            distributed.serve_parameters(cluster, session_config_from_args(args))
    network = import_network(args.model_def)
    schedule = schedule_from_args(args)
    np.random.seed(seed=args.seed)
    return network, schedule


def open_run(args, script_file):
    """After the training set is loaded: the LFW check (or None), the --pretrained_model check, and
    the run folders with their records. Returns (lfw_check, RunFolders)."""
    lfw_check = lfw_check_from_args(args)
    if args.pretrained_model:
        checkpoint_prefix(args.pretrained_model)
    return lfw_check, start_run(args, script_file)


def train_in_new_graph(args, build_graph, strategy, folders, schedule, lfw_check, records=None):
    """build_graph() in a new default graph, then train(); the record file is closed at the end."""
    with tf.Graph().as_default():
        graph = build_graph()
        try:
            return train(args, graph, strategy, folders, schedule, lfw_check)
        finally:
            if records is not None:
                records.close()
