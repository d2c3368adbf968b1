"""Triplet-training speed: seconds per select_triplets call (45 people x 40 images, 128-D, against a
per-pair loop as the classic code runs it) and images/s of training steps through the input pipeline;
with --profile, where the time of a training step and of a selection forward pass (phase_train True,
as the classic selection runs it) goes, by op type, from a traced run (RunMetadata step_stats);
--bare_step profiles beside it the bare step of bench_embed.py --train_step (the network, the triplet
loss and Adagrad on a fed batch: no pipeline, no moving averages, no summaries, no phase_train cond).
Steps are timed in wall and process-CPU seconds (CPU shows how many cores a step got on a loaded
machine); --precision bf16 runs the session's bf16 rewrite as the training scripts do.

Usage: python benchmarks/bench_train.py [--model_def models.small_cnn] [--image_size 96]
           [--batch_size 90] [--steps 8] [--data_dir ../shared/data/lfw_deepfunneled] [--skip_loop]
           [--precision fp32|bf16] [--tool_args "--weight_decay 1e-4"] [--profile] [--bare_step]
"""
import argparse
import collections
import os
import shlex
import time

import numpy as np
from _paths import SHARED

from facenet_tf import dataset as dataset_io
from facenet_tf import tf_setup, training
from facenet_tf.training import input_pipeline, triplets
from facenet_tf.training.flags import import_network

tf = tf_setup.configure()
tf1 = tf.compat.v1
REFERENCE = os.path.join(SHARED, 'reference', 'train_eval',
                         'select_triplets_clustered_45x40.npz')


def per_pair_loop(emb, counts, alpha):
    """The selection as one loop over anchor-positive pairs (what the vectorised code replaces)."""
    start, found, pairs = 0, [], 0
    for k in counts:
        for j in range(1, k):
            a = start + j - 1
            neg = np.sum(np.square(emb[a] - emb), 1)
            neg[start:start + k] = np.nan
            for p in range(start + j, start + k):
                pos = np.sum(np.square(emb[a] - emb[p]))
                with np.errstate(invalid='ignore'):
                    cand = np.where(neg - pos < alpha)[0]
                if len(cand):
                    found.append((a, p, cand[np.random.randint(len(cand))]))
                pairs += 1
        start += k
    np.random.shuffle(found)
    return found, pairs


def bench_selection(skip_loop, repeats=15):
    if os.path.isfile(REFERENCE):
        d = np.load(REFERENCE)
        emb, counts, alpha, source = d['embeddings'], d['num_per_class'], float(d['alpha']), 'reference'
    else:
        rng = np.random.RandomState(0)
        emb = rng.randn(1800, 128)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        counts, alpha, source = np.full(45, 40), 0.2, 'random'
    for selection in triplets.SELECTIONS:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            tr, pairs = triplets.select_triplet_indices(emb, counts, alpha, selection)
            times.append(time.perf_counter() - start)
        print('select_triplets %-8s 45x40 (%s embeddings): %.4f s per call (median of %d), %d triplets of %d pairs'
              % (selection, source, np.median(times), repeats, len(tr), pairs))
        if selection == 'vggface':
            vectorised = np.median(times)
    if not skip_loop:
        start = time.perf_counter()
        found, pairs = per_pair_loop(emb, counts, alpha)
        loop = time.perf_counter() - start
        print('per-pair loop            45x40: %.3f s per call, %d triplets of %d pairs: vectorised is %.0fx faster'
              % (loop, len(found), pairs, loop / vectorised))


def bench_training(args):
    from facenet_tf import train_triplet as train_tripletloss
    targs = train_tripletloss.parse_arguments(
        ['--model_def', args.model_def, '--image_size', str(args.image_size), '--batch_size', str(args.batch_size),
         '--nrof_preprocess_threads', str(args.threads), '--random_crop', '--random_flip',
         '--precision', args.precision] + shlex.split(args.tool_args))
    dataset = [c for c in dataset_io.get_dataset(args.data_dir) if len(c) >= 2][:200]
    network = import_network(args.model_def)
    control = input_pipeline.control_flags(random_crop=True, random_flip=True)
    with tf.Graph().as_default():
        g = train_tripletloss.build_graph(targs, network)
        with tf1.Session(config=tf_setup.session_config(args.precision)) as sess:
            sess.run(tf1.global_variables_initializer())
            coord, threads = training.start_queue_runners(sess)
            rng = np.random.RandomState(0)
            times, cpus = [], []
            for step in range(args.steps + 1):
                paths = []
                for _ in range(args.batch_size // 3):
                    i, j = rng.choice(len(dataset), 2, replace=False)
                    a, p = rng.choice(dataset[i].image_paths, 2, replace=False)
                    paths.append((a, p, rng.choice(dataset[j].image_paths)))
                paths = np.array(paths, dtype=object)
                labels = np.arange(paths.size).reshape(-1, 3)
                sess.run(g.queue.enqueue_op, {g.queue.image_paths_placeholder: paths,
                                              g.queue.labels_placeholder: labels,
                                              g.queue.control_placeholder: np.full(labels.shape, control)})
                feed = {g.batch_size_placeholder: args.batch_size, g.learning_rate_placeholder: 0.01,
                        g.phase_train_placeholder: True, g.write_histograms: False}
                start, cpu = time.perf_counter(), time.process_time()
                sess.run([g.loss, g.train_op, g.summary_op], feed)
                if step > 0:
                    times.append(time.perf_counter() - start)
                    cpus.append(time.process_time() - cpu)
            if args.profile:
                for name, fetches in (('training step', [g.loss, g.train_op, g.summary_op]),
                                      ('selection forward pass', [g.embeddings, g.label_batch]),
                                      ('training step + histograms', [g.loss, g.train_op, g.summary_op])):
                    feed[g.write_histograms] = name.endswith('histograms')
                    print_profile(name, sess, fetches, feed, lambda: sess.run(g.queue.enqueue_op, {
                        g.queue.image_paths_placeholder: paths, g.queue.labels_placeholder: labels,
                        g.queue.control_placeholder: np.full(labels.shape, control)}))
            training.stop_queue_runners(sess, coord, threads, [g.close_queue])
    per_step = float(np.median(times))
    print('training step %s %dpx batch %d (%s, %d threads, %s): %.3f s per step, %.2f CPU-s, %.1f images/s '
          '(median of %d)' % (args.model_def, args.image_size, args.batch_size, targs.optimizer, args.threads,
                              args.precision, per_step, float(np.median(cpus)), args.batch_size / per_step, len(times)))
    if args.bare_step:
        bench_bare_step(args, targs, network)


def bench_bare_step(args, targs, network):
    """The bare step of bench_embed.py --train_step (same network flags, a fed random batch): timed and
    profiled as the tool's step above."""
    with tf.Graph().as_default():
        tf1.set_random_seed(1)
        images = tf1.placeholder(tf.float32, [None, args.image_size, args.image_size, 3])
        prelogits, _ = network.inference(images, targs.keep_probability, phase_train=True,
                                         bottleneck_layer_size=targs.embedding_size, weight_decay=targs.weight_decay)
        embeddings = tf.nn.l2_normalize(prelogits, 1, 1e-10)
        anchor, positive, negative = tf.unstack(tf.reshape(embeddings, [-1, 3, targs.embedding_size]), 3, 1)
        loss = tf.add_n([triplets.triplet_loss(anchor, positive, negative, targs.alpha)]
                        + tf1.get_collection(tf1.GraphKeys.REGULARIZATION_LOSSES))
        train_op = tf1.train.AdagradOptimizer(0.01).minimize(loss)
        feed = {images: np.random.RandomState(0).standard_normal(
            (args.batch_size, args.image_size, args.image_size, 3)).astype(np.float32)}
        with tf1.Session(config=tf_setup.session_config(args.precision)) as sess:
            sess.run(tf1.global_variables_initializer())
            times, cpus = [], []
            for step in range(args.steps + 1):
                start, cpu = time.perf_counter(), time.process_time()
                sess.run([loss, train_op], feed)
                if step > 0:
                    times.append(time.perf_counter() - start)
                    cpus.append(time.process_time() - cpu)
            if args.profile:
                print_profile('bare training step', sess, [loss, train_op], feed, lambda: None)
    print('bare training step (%s): %.3f s per step, %.2f CPU-s (median of %d)'
          % (args.precision, float(np.median(times)), float(np.median(cpus)), len(times)))


def print_profile(name, sess, fetches, feed, refill, rows=12):
    """Run `fetches` once untraced (executor and kernels ready), then traced, each on a batch queued by
    refill(); print the wall time of the traced run and each op type's share of the summed op times."""
    from tensorflow.core.protobuf import config_pb2
    refill()
    sess.run(fetches, feed)
    refill()
    time.sleep(2.0)     # the batch decoded before the traced run starts
    metadata = config_pb2.RunMetadata()
    start = time.perf_counter()
    sess.run(fetches, feed, options=config_pb2.RunOptions(trace_level=config_pb2.RunOptions.FULL_TRACE),
             run_metadata=metadata)
    wall = time.perf_counter() - start
    by_type, counts = collections.Counter(), collections.Counter()
    for device in metadata.step_stats.dev_stats:
        for node in device.node_stats:
            label = node.timeline_label
            op = label.split(' = ', 1)[1].split('(', 1)[0] if ' = ' in label else node.node_name
            by_type[op] += node.all_end_rel_micros / 1e6
            counts[op] += 1
    total = sum(by_type.values())
    print('%s (traced, queue refilled): %.2f s wall, %.2f s summed over %d ops' % (name, wall, total,
                                                                                  sum(counts.values())))
    for op, seconds in by_type.most_common(rows):
        print('   %-36s %7.3f s %5.1f%% %5d ops' % (op[:36], seconds, 100 * seconds / total, counts[op]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model_def', default='models.small_cnn')
    parser.add_argument('--image_size', type=int, default=96)
    parser.add_argument('--batch_size', type=int, default=90)
    parser.add_argument('--steps', type=int, default=8)
    parser.add_argument('--threads', type=int, default=4)
    parser.add_argument('--data_dir', default=os.path.join(SHARED, 'data', 'lfw_deepfunneled'))
    parser.add_argument('--skip_loop', action='store_true', help='Do not time the per-pair loop (about 1 s).')
    parser.add_argument('--skip_training', action='store_true')
    parser.add_argument('--profile', action='store_true', help='Print where a step\'s time goes, by op type.')
    parser.add_argument('--precision', choices=['fp32', 'bf16'], default='fp32')
    parser.add_argument('--tool_args', default='', help='More training flags, e.g. "--weight_decay 1e-4".')
    parser.add_argument('--bare_step', action='store_true', help='Also time (and profile) the bare step.')
    args = parser.parse_args()
    bench_selection(args.skip_loop)
    if not args.skip_training:
        bench_training(args)


if __name__ == '__main__':
    main()
