"""The triplet training tool's run (`facenet-train-triplet`, classic train_tripletloss.py): its
configuration, graph and epoch strategies. The flags are read by facenet_tf.train_triplet, which
loads this module (and TensorFlow) only to train; what the tool does is described there.
"""
import dataclasses
import itertools
import time
from typing import Any

import numpy as np

from facenet_tf import tf_setup
from facenet_tf import training
from facenet_tf.training import input_pipeline, triplets
from facenet_tf.training.config import TrainingConfig
from facenet_tf.errors import FaceNetError
from facenet_tf.model_io import save_variables_and_metagraph  # noqa: F401 (classic name)
from facenet_tf.training import get_learning_rate_from_file  # noqa: F401 (classic name)

tf = tf_setup.configure()  # quiet TensorFlow import, oneDNN, TF1 graph semantics

MAX_EMPTY_ROUNDS = 20
SCALAR_SUMMARY_STEPS = 20     # the scalar summaries are written every this many steps
BATCHES_PER_ENQUEUE = 10


@dataclasses.dataclass(kw_only=True)
class TripletConfig(TrainingConfig):
    """The run's configuration: the shared training flags and this script's own."""
    people_per_batch: int
    images_per_person: int
    alpha: float
    triplet_selection: str
    triplet_mining: str


@dataclasses.dataclass(eq=False)
class TripletGraph(training.TrainingGraph):
    """The training graph with, for --triplet_mining batch, the count of triplets mined per batch."""
    nrof_mined: Any = None


def build_graph(config, network, records=None):
    """The training graph (a TripletGraph; images read from `records` when the training set is a
    record file)."""
    def tower_loss(tower, prelogits, embeddings, labels):
        sums = {}
        if config.triplet_mining == 'batch':
            triplet_loss, sums['nrof_mined'] = triplets.batch_triplet_loss(embeddings, labels, config.alpha,
                                                                           config.triplet_selection)
        else:
            anchor, positive, negative = tf.unstack(tf.reshape(embeddings, [-1, 3, config.embedding_size]), 3, 1)
            triplet_loss = triplets.triplet_loss(anchor, positive, negative, config.alpha)
        return training.TowerLoss(tf.add_n([triplet_loss] + tower.regularization_losses(), name='total_loss'),
                                  sums=sums)

    return training.build_training_graph(config, network, 3, tower_loss,
                                         read_file=training.pipeline_reader(config, records),
                                         graph_class=TripletGraph)


class TripletRounds(training.EpochStrategy):
    """Classic triplet epochs for the epoch loop: epochs numbered from the global step, checkpoints
    by step; each round samples people, embeds them, selects triplets and trains on them until the
    epoch's epoch_size steps are done. An epoch that ends early (no triplets) ends training."""

    def __init__(self, config, dataset):
        self.config = config
        self.dataset = dataset
        self.lfw_batch_size = config.batch_size
        self.ended_early = False

    def epochs(self, config, step):
        return range(step // config.epoch_size, config.max_nrof_epochs)

    def after_epoch(self, run, epoch, step, lfw_result, lfw_seconds):
        if self.ended_early:
            print('Training stopped: no more triplets to train on')
            return False
        return True

    def train_step(self, run, feed, size, epoch, batch_number, progress, extra=()):
        """One training step on the next `size` queued images; returns the fetched values. The
        summaries are fetched with every step, so every step runs the one prepared executor: the
        scalars, written every SCALAR_SUMMARY_STEPS steps; the weight and gradient histograms
        (seconds of work for 23 M values) computed and written on the epoch's last step only."""
        g = run.graph
        feed_step = dict(feed)
        feed_step[g.batch_size_placeholder] = size
        last = batch_number + 1 == self.config.epoch_size
        if g.write_histograms is not None:
            feed_step[g.write_histograms] = last
        names = ('loss', 'train_op', 'global_step', 'learning_rate', 'summary_op') + tuple(extra)
        start = time.perf_counter()
        v = run.train_step(names, feed_step, epoch, False)
        if last or (batch_number + 1) % SCALAR_SUMMARY_STEPS == 0:
            run.summary_writer.add_summary(v['summary_op'], v['global_step'])
        progress.update(v['global_step'], size, v['loss'], v['learning_rate'], time.perf_counter() - start)
        return v

    def select(self, run, feed):
        """One selection round: (selected triplets of paths, nrof_triplets, seconds selecting)."""
        config, g = self.config, run.graph
        image_paths, num_per_class = triplets.sample_people(self.dataset, config.people_per_batch,
                                                            config.images_per_person)
        embed_control = input_pipeline.control_flags(fixed_standardization=config.use_fixed_image_standardization)
        start = time.time()
        emb_array = training.embed_through_pipeline(run.sess, g.queue, g.embeddings, g.label_batch, image_paths,
                                                    config.batch_size, embed_control, feed, g.batch_size_placeholder)
        print('Running forward pass on sampled images: %.3f' % (time.time() - start))
        start = time.time()
        selected, num_trips, nrof_triplets = triplets.select_triplets(
            emb_array, num_per_class, image_paths, config.people_per_batch, config.alpha,
            selection=config.triplet_selection)
        seconds = time.time() - start
        print('Selected %d triplets from %d anchor-positive pairs (%s, %.3f s)'
              % (nrof_triplets, num_trips, config.triplet_selection, seconds))
        return selected, nrof_triplets, seconds

    def train_epoch(self, run, epoch, lr):
        """One epoch of epoch_size steps in selection rounds; returns the step reached."""
        config, g = self.config, run.graph
        progress = training.EpochProgress(epoch, config.epoch_size)
        train_control = training.train_control(config)
        feed = {g.learning_rate_placeholder: lr, g.phase_train_placeholder: True}
        batch_number = 0
        step, effective_lr = run.sess.run([g.global_step, g.learning_rate], feed)
        selection_times, triplet_counts = [], []
        empty_rounds = 0
        while batch_number < config.epoch_size:
            selected, nrof_triplets, seconds = self.select(run, feed)
            selection_times.append(seconds)
            triplet_counts.append(nrof_triplets)
            if nrof_triplets == 0:
                empty_rounds += 1
                if empty_rounds >= MAX_EMPTY_ROUNDS:
                    print('No triplet found in %d rounds in a row: epoch %d ends early (every pair already '
                          'satisfies the margin; try --triplet_selection vggface or a larger --alpha)'
                          % (empty_rounds, epoch))
                    break
                continue
            empty_rounds = 0
            per_batch = config.batch_size // 3
            nrof_batches = min(int(np.ceil(nrof_triplets / float(per_batch))), config.epoch_size - batch_number)
            paths = list(itertools.chain(*selected[:nrof_batches * per_batch]))
            input_pipeline.enqueue(run.sess, g.queue, paths, np.arange(len(paths)), train_control)
            remaining = len(paths)
            for _ in range(nrof_batches):
                size = min(config.batch_size, remaining)
                v = self.train_step(run, feed, size, epoch, batch_number, progress)
                step, effective_lr = v['global_step'], v['learning_rate']
                remaining -= size
                batch_number += 1
        self.ended_early = batch_number < config.epoch_size
        print(progress.summary())
        training.add_summary(run.summary_writer, step, loss=np.mean(progress.losses) if progress.losses else 0.0,
                             learning_rate=effective_lr, time__selection=np.sum(selection_times),
                             triplets__selected=np.mean(triplet_counts), time__epoch=progress.elapsed())
        return step


class BatchMining(TripletRounds):
    """--triplet_mining batch: triplets mined inside each batch by the loss graph."""

    def train_epoch(self, run, epoch, lr):
        """One epoch with triplets mined inside each batch: every batch is a sample_people draw of
        batch_size images (up to images_per_person per person) and the loss graph admits its triplets.
        Batches are queued BATCHES_PER_ENQUEUE at a time; returns the step reached."""
        config, g = self.config, run.graph
        progress = training.EpochProgress(epoch, config.epoch_size)
        control = training.train_control(config)
        feed = {g.learning_rate_placeholder: lr, g.phase_train_placeholder: True}
        step, effective_lr = run.sess.run([g.global_step, g.learning_rate], feed)
        mined = []
        batch_number = 0
        while batch_number < config.epoch_size:
            sizes, paths, labels = [], [], []
            for _ in range(min(BATCHES_PER_ENQUEUE, config.epoch_size - batch_number)):
                batch_paths, _, batch_labels = triplets.sample_images(self.dataset, config.batch_size,
                                                                      config.images_per_person)
                size = len(batch_paths) // 3 * 3
                sizes.append(size)
                paths += batch_paths[:size]
                labels.append(batch_labels[:size])
            input_pipeline.enqueue(run.sess, g.queue, paths, np.concatenate(labels), control)
            for size in sizes:
                v = self.train_step(run, feed, size, epoch, batch_number, progress, ('nrof_mined',))
                step, effective_lr = v['global_step'], v['learning_rate']
                mined.append(v['nrof_mined'])
                batch_number += 1
        print(progress.summary() + ', %.0f triplets mined per batch' % np.mean(mined))
        training.add_summary(run.summary_writer, step, loss=np.mean(progress.losses), learning_rate=effective_lr,
                             triplets__selected=np.mean(mined), time__epoch=progress.elapsed())
        return step


def main(args):
    """Train from the flags `args` (checked by facenet_tf.train_triplet, read into a TripletConfig)."""
    config = TripletConfig.from_args(args)
    network, schedule = training.begin(config)
    dataset, records = input_pipeline.load_training_set(config.data_dir)
    train_set = [c for c in dataset if len(c) > 0]
    if len(train_set) < 2 or not any(len(c) >= 2 for c in train_set):
        if records is not None:
            records.close()
        raise FaceNetError('the training set %s needs at least 2 people and one with 2+ images' % config.data_dir)
    checks, folders = training.open_run(config, __file__)
    print('Training set: %d people, %d images' % (len(train_set), sum(len(c) for c in train_set)))
    strategy = (BatchMining if config.triplet_mining == 'batch' else TripletRounds)(config, train_set)
    return training.train_in_new_graph(config, lambda: build_graph(config, network, records), strategy, folders,
                                       schedule, checks, records)
