"""Train a face embedding network with triplet loss and online triplet selection (classic script).

Each round samples people_per_batch people with up to images_per_person images each, embeds them
through the input pipeline (no augmentation), selects triplets with `--triplet_selection`, and trains
on them batch by batch until the epoch's epoch_size steps are done (only as many triplets are queued
as the epoch still has steps for). `--data_dir` is a folder of identity folders (several joined by
':') or a record dataset (a folder holding `train.rec` + `train.idx`). Every epoch: a checkpoint in
the classic layout, summaries, and with --lfw_dir an LFW check.
"""
import argparse
import itertools
import sys
import time

from facenet_tf import input_pipeline, training, triplets
from facenet_tf.cli import UserError, run

import numpy as np  # noqa: E402 (facenet_tf first: it sets TensorFlow's logging and TF1 semantics)
import tensorflow as tf  # noqa: E402

tf1 = tf.compat.v1

MAX_EMPTY_ROUNDS = 20
BATCHES_PER_ENQUEUE = 10


def build_graph(args, network, records=None):
    """The training graph (images read from `records` when the training set is a record file);
    returns a dict of its tensors and ops."""
    g = training.build_network_graph(args, network, 3, read_file=input_pipeline.record_file_reader(records))
    if args.triplet_mining == 'batch':
        triplet_loss, g['nrof_mined'] = triplets.batch_triplet_loss(g['embeddings'], g['label_batch'], args.alpha,
                                                                    args.triplet_selection)
    else:
        anchor, positive, negative = tf.unstack(tf.reshape(g['embeddings'], [-1, 3, args.embedding_size]), 3, 1)
        triplet_loss = triplets.triplet_loss(anchor, positive, negative, args.alpha)
    regularization_losses = tf1.get_collection(tf1.GraphKeys.REGULARIZATION_LOSSES)
    g['loss'] = tf.add_n([triplet_loss] + regularization_losses, name='total_loss')
    g['train_op'], g['saved'], g['averages'] = training.build_train_op(
        g['loss'], g['global_step'], args.optimizer, g['learning_rate'], args.moving_average_decay,
        tf1.global_variables())
    training.add_run_ops(args, g)
    return g


def learning_rate_for(args, schedule, epoch):
    return args.learning_rate if args.learning_rate > 0.0 else training.learning_rate_for_epoch(schedule, epoch)


def train_epoch(args, sess, g, dataset, epoch, lr, summary_writer):
    """One epoch of epoch_size steps; returns the step reached."""
    log = training.StepLog(epoch, args.epoch_size)
    train_control = training.train_control(args)
    embed_control = input_pipeline.control_flags(fixed_standardization=args.use_fixed_image_standardization)
    feed = {g['learning_rate_placeholder']: lr, g['phase_train_placeholder']: True}
    batch_number = 0
    step, effective_lr = sess.run([g['global_step'], g['learning_rate']], feed)
    selection_times, triplet_counts = [], []
    empty_rounds = 0
    while batch_number < args.epoch_size:
        image_paths, num_per_class = triplets.sample_people(dataset, args.people_per_batch, args.images_per_person)
        emb_array = training.embed_through_pipeline(
            sess, g['queue'], g['embeddings'], g['label_batch'], image_paths, args.batch_size, embed_control,
            feed, g['batch_size_placeholder'])
        start = time.time()
        selected, num_trips, nrof_triplets = triplets.select_triplets(
            emb_array, num_per_class, image_paths, args.people_per_batch, args.alpha,
            selection=args.triplet_selection)
        selection_times.append(time.time() - start)
        triplet_counts.append(nrof_triplets)
        print('Selected %d triplets from %d anchor-positive pairs (%s, %.3f s)'
              % (nrof_triplets, num_trips, args.triplet_selection, selection_times[-1]))
        if nrof_triplets == 0:
            empty_rounds += 1
            if empty_rounds >= MAX_EMPTY_ROUNDS:
                print('No triplet found in %d rounds in a row: epoch %d ends early (every pair already '
                      'satisfies the margin; try --triplet_selection vggface or a larger --alpha)'
                      % (empty_rounds, epoch))
                break
            continue
        empty_rounds = 0
        per_batch = args.batch_size // 3
        nrof_batches = min(int(np.ceil(nrof_triplets / float(per_batch))), args.epoch_size - batch_number)
        used = selected[:nrof_batches * per_batch]
        paths = list(itertools.chain(*used))
        input_pipeline.enqueue(sess, g['queue'], paths, np.arange(len(paths)), train_control)
        remaining = len(paths)
        for _ in range(nrof_batches):
            size = min(args.batch_size, remaining)
            v = _train_step(args, sess, g, feed, size, epoch, batch_number, log, summary_writer)
            step, effective_lr = v['global_step'], v['learning_rate']
            remaining -= size
            batch_number += 1
    print(log.summary())
    training.add_summary(summary_writer, step, loss=np.mean(log.losses) if log.losses else 0.0,
                         learning_rate=effective_lr,
                         time__selection=np.sum(selection_times),
                         triplets__selected=np.mean(triplet_counts), time__epoch=time.time() - log.start)
    return step


def _train_step(args, sess, g, feed, size, epoch, batch_number, log, summary_writer, extra=()):
    """One training step on the next `size` queued images; returns the fetched values."""
    feed_step = dict(feed)
    feed_step[g['batch_size_placeholder']] = size
    v = training.run_train_step(sess, g, ('loss', 'train_op', 'global_step', 'learning_rate') + tuple(extra),
                                feed_step, epoch, summary_writer,
                                batch_number + 1 == args.epoch_size or (batch_number + 1) % 20 == 0)
    log.update(v['global_step'], batch_number + 1, size, v['loss'], v['learning_rate'])
    return v


def train_epoch_batch_mining(args, sess, g, dataset, epoch, lr, summary_writer):
    """One epoch with triplets mined inside each batch: every batch is a sample_people draw of
    batch_size images (up to images_per_person per person) and the loss graph admits its triplets.
    Batches are queued BATCHES_PER_ENQUEUE at a time; returns the step reached."""
    log = training.StepLog(epoch, args.epoch_size)
    control = training.train_control(args)
    feed = {g['learning_rate_placeholder']: lr, g['phase_train_placeholder']: True}
    step, effective_lr = sess.run([g['global_step'], g['learning_rate']], feed)
    mined = []
    batch_number = 0
    while batch_number < args.epoch_size:
        sizes, paths, labels = [], [], []
        for _ in range(min(BATCHES_PER_ENQUEUE, args.epoch_size - batch_number)):
            batch_paths, _, batch_labels = triplets.sample_images(dataset, args.batch_size, args.images_per_person)
            size = len(batch_paths) // 3 * 3
            sizes.append(size)
            paths += batch_paths[:size]
            labels.append(batch_labels[:size])
        input_pipeline.enqueue(sess, g['queue'], paths, np.concatenate(labels), control)
        for size in sizes:
            v = _train_step(args, sess, g, feed, size, epoch, batch_number, log, summary_writer, ('nrof_mined',))
            step, effective_lr = v['global_step'], v['learning_rate']
            mined.append(v['nrof_mined'])
            batch_number += 1
    print(log.summary() + ', %.0f triplets mined per batch' % np.mean(mined))
    training.add_summary(summary_writer, step, loss=np.mean(log.losses), learning_rate=effective_lr,
                         triplets__selected=np.mean(mined), time__epoch=time.time() - log.start)
    return step


def main(args):
    if args.batch_size % 3 != 0 or args.batch_size <= 0:
        raise UserError('--batch_size must be a positive multiple of 3, got %d' % args.batch_size)
    if args.people_per_batch < 2 or args.images_per_person < 1:
        raise UserError('--people_per_batch must be at least 2 and --images_per_person at least 1')
    if args.nrof_preprocess_threads < 1:
        raise UserError('--nrof_preprocess_threads must be at least 1')
    network = training.import_network(args.model_def)
    schedule = training.schedule_from_args(args)
    np.random.seed(seed=args.seed)
    dataset, records = input_pipeline.load_training_set(args.data_dir)
    train_set = [c for c in dataset if len(c) > 0]
    if len(train_set) < 2 or not any(len(c) >= 2 for c in train_set):
        if records is not None:
            records.close()
        raise UserError('the training set %s needs at least 2 people and one with 2+ images' % args.data_dir)
    lfw_check = training.lfw_check_from_args(args)
    if args.pretrained_model:
        training.checkpoint_prefix(args.pretrained_model)

    subdir, log_dir, model_dir = training.start_run(args, __file__)
    print('Training set: %d people, %d images' % (len(train_set), sum(len(c) for c in train_set)))

    with tf.Graph().as_default():
        g = build_graph(args, network, records)
        try:
            with training.training_session(args, g, log_dir) as (sess, summary_writer, coord):
                return _train(args, sess, g, train_set, schedule, lfw_check, summary_writer, subdir, model_dir,
                              log_dir, coord)
        finally:
            if records is not None:
                records.close()


def _train(args, sess, g, train_set, schedule, lfw_check, summary_writer, subdir, model_dir, log_dir, coord):
    step = sess.run(g['global_step'])
    epoch = step // args.epoch_size
    start = time.time()
    try:
        while epoch < args.max_nrof_epochs:
            lr = learning_rate_for(args, schedule, epoch)
            if lr < 0:
                print('Learning rate schedule %s ends training at epoch %d' % (args.learning_rate_schedule_file, epoch))
                break
            run_epoch = train_epoch_batch_mining if args.triplet_mining == 'batch' else train_epoch
            step = run_epoch(args, sess, g, train_set, epoch, lr, summary_writer)
            g['last_checkpoint'] = training.save_checkpoint(sess, g['saver'], summary_writer, model_dir, subdir, step)
            if lfw_check is not None:
                training.run_lfw_check(args, sess, g, lfw_check, args.batch_size, step, summary_writer, log_dir)
            if step < (epoch + 1) * args.epoch_size:
                print('Training stopped: no more triplets to train on')
                break
            epoch = step // args.epoch_size
    except KeyboardInterrupt:
        step = sess.run(g['global_step'])
        path = training.save_checkpoint(sess, g['saver'], summary_writer, model_dir, subdir, step)
        sys.stderr.write('interrupted: checkpoint saved to %s\n' % path)
        return 130
    except training.TrainingDiverged as e:
        sys.stderr.write('error: %s\n' % e)
        return 1
    except (tf.errors.OutOfRangeError, tf.errors.CancelledError) as e:
        raise training.input_error(coord, e)
    print('Training done: %d steps, %.1f min; model saved in %s' % (step, (time.time() - start) / 60.0, model_dir))
    return 0


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
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
    return parser.parse_args(argv)


if __name__ == '__main__':
    sys.exit(run(main, parse_arguments(sys.argv[1:])))
