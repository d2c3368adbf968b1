"""The softmax training tool's run (`facenet-train-softmax`, classic train_softmax.py): its
configuration, graph and epoch strategy. The flags are read by facenet_tf.train_softmax, which
loads this module (and TensorFlow) only to train; what the tool does is described there.
"""
import dataclasses
import os
import time
from typing import Any, Optional

import numpy as np

from facenet_tf import tf_setup
from facenet_tf import dataset as dataset_io
from facenet_tf import training
from facenet_tf.training import input_pipeline, losses, partial_fc, softmax_training
from facenet_tf.training.config import TrainingConfig
from facenet_tf.errors import FaceNetError
from facenet_tf.model_io import save_variables_and_metagraph  # noqa: F401 (classic name)
from facenet_tf.training import get_learning_rate_from_file  # noqa: F401 (classic name)

tf = tf_setup.configure()  # quiet TensorFlow import, oneDNN, TF1 graph semantics
tf1 = tf.compat.v1

STEP_FETCHES = ('loss', 'train_op', 'global_step', 'reg_loss', 'prelogits', 'xent_loss', 'learning_rate',
                'prelogits_norm', 'accuracy', 'center_loss')


@dataclasses.dataclass(kw_only=True)
class SoftmaxConfig(TrainingConfig):
    """The run's configuration: the shared training flags, this script's own, and the margins of
    cos(m1 * theta + m2) - m3 (None for --loss softmax) derived from them."""
    loss: str
    margin_s: float
    sample_rate: float
    margin_m1: Optional[float]
    margin_m2: Optional[float]
    margin_m3: Optional[float]
    center_loss_factor: float
    center_loss_alfa: float
    prelogits_norm_loss_factor: float
    prelogits_norm_p: float
    prelogits_hist_max: float
    log_histograms: bool
    filter_filename: str
    filter_percentile: float
    filter_min_nrof_images_per_class: int
    validate_every_n_epochs: int
    validation_set_split_ratio: float
    min_nrof_val_images_per_class: float
    lfw_batch_size: int
    margins: Optional[tuple] = None


@dataclasses.dataclass(eq=False)
class SoftmaxGraph(training.TrainingGraph):
    """The training graph with the classifier's losses and accuracy."""
    xent_loss: Any = None
    accuracy: Any = None
    prelogits_norm: Any = None
    center_loss: Any = None
    reg_loss: Any = None


def build_graph(config, network, nrof_classes, records):
    """The training graph (a SoftmaxGraph)."""
    def tower_loss(tower, prelogits, embeddings, labels):
        class_labels = labels
        if config.sample_rate < 1.0:
            logits, accuracy_logits, class_labels, decay, _ = partial_fc.partial_margin_logits(
                prelogits, labels, nrof_classes, config.sample_rate, config.margin_s, *config.margins,
                weight_decay=config.weight_decay)
            if decay is not None:
                tower.add_regularization_loss(decay)
        elif config.loss == 'softmax':
            logits = accuracy_logits = losses.softmax_logits(prelogits, nrof_classes, config.weight_decay)
        else:
            logits, accuracy_logits = losses.margin_logits(prelogits, labels, nrof_classes, config.margin_s,
                                                           *config.margins, weight_decay=config.weight_decay)
        norm = losses.prelogits_norm(prelogits, config.prelogits_norm_p)
        if config.prelogits_norm_loss_factor > 0.0:
            tower.add_regularization_loss(norm * config.prelogits_norm_loss_factor)
        center_loss, _ = losses.center_loss(prelogits, labels, config.center_loss_alfa, nrof_classes)
        if config.center_loss_factor > 0.0:
            tower.add_regularization_loss(center_loss * config.center_loss_factor)
        xent_loss = losses.cross_entropy(logits, class_labels)
        reg_losses = tower.regularization_losses()
        return training.TowerLoss(
            tf.add_n([xent_loss] + reg_losses, name='total_loss'),
            means=dict(xent_loss=xent_loss, accuracy=losses.accuracy(accuracy_logits, class_labels),
                       prelogits_norm=norm,
                       center_loss=center_loss, reg_loss=tf.add_n(reg_losses) if reg_losses else tf.constant(0.0)))

    return training.build_training_graph(config, network, 1, tower_loss, queue_capacity=2000000,
                                         read_file=training.pipeline_reader(config, records),
                                         graph_class=SoftmaxGraph, log_histograms=config.log_histograms)


class SoftmaxEpochs(training.EpochStrategy):
    """Classifier epochs for the epoch loop: epochs numbered from 1 (checkpoints too), epoch_size
    steps over a shuffled stream of the training images, the validation set every
    validate_every_n_epochs epochs and at the last one, and the statistics in <log_dir>/stat.h5."""
    stops_at_zero_rate = True
    first_epoch = 1

    def __init__(self, config, train, val, log_dir):
        self.config = config
        self.lfw_batch_size = config.lfw_batch_size
        self.image_list = np.array(train[0], dtype=object)
        self.label_list = np.array(train[1], np.int64)
        self.val_image_list, self.val_label_list = val
        self.stat = softmax_training.new_statistics(config.max_nrof_epochs, config.epoch_size,
                                                    config.validate_every_n_epochs)
        self.stat_file = os.path.join(log_dir, 'stat.h5')
        self.sampler = softmax_training.ShuffledIndices(len(self.label_list))

    def epochs(self, config, step):
        """From 1, or from the global step's epoch for a worker rejoining a cluster."""
        return range(min(step // config.epoch_size, config.max_nrof_epochs) + 1, config.max_nrof_epochs + 1)

    def checkpoint_number(self, epoch, step):
        return epoch

    def train_epoch(self, run, epoch, lr):
        config = self.config
        t = time.time()
        step = self.train_steps(run, epoch, lr)
        self.stat['time_train'][epoch - 1] = time.time() - t
        t = time.time()
        if self.val_label_list and ((epoch - 1) % config.validate_every_n_epochs == config.validate_every_n_epochs - 1
                                    or epoch == config.max_nrof_epochs):
            self.validate(run, epoch, step)
        self.stat['time_validate'][epoch - 1] = time.time() - t
        return step

    def train_steps(self, run, epoch, lr):
        """One epoch of epoch_size steps (epoch counts from 1); returns the step reached."""
        config, g, stat = self.config, run.graph, self.stat
        index = self.sampler.take(config.epoch_size * config.batch_size)
        input_pipeline.enqueue(run.sess, g.queue, self.image_list[index], self.label_list[index],
                               training.train_control(config))
        progress = training.EpochProgress(epoch, config.epoch_size)
        feed = {g.learning_rate_placeholder: lr, g.phase_train_placeholder: True,
                g.batch_size_placeholder: config.batch_size}
        train_time = 0.0
        step = run.global_step()
        for batch_number in range(config.epoch_size):
            start = time.time()
            v = run.train_step(STEP_FETCHES, feed, epoch,
                               batch_number % 100 == 0 or batch_number + 1 == config.epoch_size)
            step = v['global_step']
            if step - 1 < stat['loss'].size:
                for key in softmax_training.STEP_KEYS:
                    stat[key][step - 1] = v[key]
            stat['learning_rate'][epoch - 1] = v['learning_rate']
            stat['prelogits_hist'][epoch - 1, :] += softmax_training.prelogits_histogram(v['prelogits'],
                                                                                         config.prelogits_hist_max)
            train_time += time.time() - start
            progress.update(step, config.batch_size, v['loss'], v['learning_rate'])
        print('%s; last batch: xent %.3f, reg loss %.3f, accuracy %.3f, center loss %.3f'
              % (progress.summary(), v['xent_loss'], v['reg_loss'], v['accuracy'], v['center_loss']))
        training.add_summary(run.summary_writer, step, time__total=train_time, learning_rate=v['learning_rate'])
        return step

    def validate(self, run, epoch, step):
        """Loss, cross-entropy and accuracy over the validation images (no augmentation)."""
        config, g = self.config, run.graph
        start = time.time()
        control = input_pipeline.control_flags(fixed_standardization=config.use_fixed_image_standardization)
        input_pipeline.enqueue(run.sess, g.queue, self.val_image_list, self.val_label_list, control)
        sums = np.zeros(3)
        done = 0
        while done < len(self.val_label_list):
            size = min(config.lfw_batch_size, len(self.val_label_list) - done)
            out = run.sess.run([g.loss, g.xent_loss, g.accuracy],
                               {g.phase_train_placeholder: False, g.batch_size_placeholder: size})
            sums += np.array(out) * size
            done += size
        loss, xent, accuracy = sums / done
        val_index = (epoch - 1) // config.validate_every_n_epochs
        for key, value in zip(softmax_training.VALIDATION_KEYS, (loss, xent, accuracy)):
            self.stat[key][val_index] = value
        training.add_summary(run.summary_writer, step, val__loss=loss, val__xent_loss=xent, val__accuracy=accuracy)
        print('Validation epoch %d: %d images, %.1f s, loss %.3f, xent %.3f, accuracy %.3f'
              % (epoch, done, time.time() - start, loss, xent, accuracy))

    def after_epoch(self, run, epoch, step, lfw_result, lfw_seconds):
        if lfw_result is not None:
            self.stat['lfw_accuracy'][epoch - 1], self.stat['lfw_valrate'][epoch - 1] = lfw_result
        self.stat['time_evaluate'][epoch - 1] = lfw_seconds
        softmax_training.save_statistics(self.stat, self.stat_file)
        return True

    def on_abort(self, run):
        softmax_training.save_statistics(self.stat, self.stat_file)

    def continue_at(self, run, step):
        """The statistics of the continued run up to its training state's step."""
        epochs_done = min(step // self.config.epoch_size, self.config.max_nrof_epochs)
        softmax_training.continue_statistics(self.stat, self.stat_file, step, epochs_done,
                                             self.config.validate_every_n_epochs)

    def done_line(self, run, epoch, step, minutes):
        return ('Training done: %d epochs, %.1f min; model saved in %s; statistics in %s'
                % (epoch, minutes, run.folders.model_dir, self.stat_file))


def filter_dataset(dataset, data_filename, percentile, min_nrof_images_per_class):
    """Classic name and contract: the dataset without the images at or above the `percentile` of
    distance_to_center and the classes left with too few images (softmax_training.filter_dataset)."""
    return softmax_training.filter_dataset(dataset, data_filename, percentile, min_nrof_images_per_class)[0]


def load_sets(config):
    """(train_set, val_set, records) after filtering and the validation split."""
    dataset, records = input_pipeline.load_training_set(config.data_dir)
    if config.filter_filename:
        dataset, nrof_images, nrof_classes = softmax_training.filter_dataset(
            dataset, config.filter_filename, config.filter_percentile, config.filter_min_nrof_images_per_class)
        print('Filtering with %s: %d images and %d classes removed'
              % (config.filter_filename, nrof_images, nrof_classes))
    if config.validation_set_split_ratio > 0.0:
        train_set, val_set = dataset_io.split_dataset(dataset, config.validation_set_split_ratio,
                           config.min_nrof_val_images_per_class, 'SPLIT_IMAGES')
    else:
        train_set, val_set = dataset, []
    if len(train_set) < 2 or sum(len(c) for c in train_set) == 0:
        raise FaceNetError('the training set %s needs at least 2 classes with images (found %d classes, '
                           '%d images)' % (config.data_dir, len(train_set), sum(len(c) for c in train_set)))
    return train_set, val_set, records


def main(args, margins):
    """Train from the flags `args` (checked by facenet_tf.train_softmax, which gives the margin loss's
    (m1, m2, m3) or None), read into a SoftmaxConfig."""
    config = SoftmaxConfig.from_args(args, margins=margins)
    network, schedule = training.begin(config)
    train_set, val_set, records = load_sets(config)
    checks, folders = training.open_run(config, __file__)
    image_list, label_list = dataset_io.get_image_paths_and_labels(train_set)
    val_image_list, val_label_list = dataset_io.get_image_paths_and_labels(val_set)
    print('Training set: %d classes, %d images; validation set: %d images; loss: %s%s'
          % (len(train_set), len(image_list), len(val_image_list), config.loss,
             '' if config.margins is None else ' (s=%g, m1=%g, m2=%g, m3=%g)' % ((config.margin_s,) + config.margins)))
    strategy = SoftmaxEpochs(config, (image_list, label_list), (val_image_list, val_label_list), folders.log_dir)
    return training.train_in_new_graph(config, lambda: build_graph(config, network, len(train_set), records), strategy,
                           folders, schedule, checks, records)
