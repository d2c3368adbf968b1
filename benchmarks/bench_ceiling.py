"""The machine's ceiling: TensorFlow's matrix-product and convolution throughput in fp32 and bf16 on
this CPU, and the embedding forward pass (InceptionResnetV1) as a fraction of it. Every speed figure
of docs/benchmarks.md is read against this table.

    python benchmarks/bench_ceiling.py [--batch_size 100] [--image_size 160] [--seconds 3] [--rounds 3]
                                       [--model MODEL] [--profile]

Rows:
- matmul: [N, N] x [N, N] products (N = 2048), 2 N^3 flops each, in float32 and in bfloat16 (tensors of
  that type: oneDNN's native bf16 kernels where the CPU has avx512_bf16/amx_bf16);
- conv: a 3x3 convolution of 128 into 128 channels on [32, 56, 56, 128] (the shape class of the
  network's blocks), SAME padding, in float32 and bfloat16;
- forward, random weights: the network at --batch_size (trained-looking batch-norm statistics),
  frozen, in fp32 and bf16 (the session's oneDNN bf16 rewrite, as `--precision bf16`) as loaded, and
  in bf16 with its batch norms folded into the convolutions (the graph the tools run in bf16); its
  flops are counted by TensorFlow's profiler on the graph (2 per multiply-add);
- with --model: that model loaded as it is into a bf16 session (before folding), and opened as the
  tools open it (runtimes.open_model: fp32 as loaded, bf16 folded), counted
  with the same flops (an InceptionResnetV1 at 160 px: its embedding size changes them by < 0.1%).
Each row runs for about --seconds after one warm-up call (median time of a call), in --rounds rounds
over all rows, interleaved, each row keeping its best round: a busy spell of the machine then
lowers a row in one round, not the comparison. GFLOP/s = flops / that time.
--profile: where the forward pass's time goes, from TensorFlow's trace of 3 calls: the op kinds'
shares of the summed op time (kernels run two at a time on 2 cores, so shares, not seconds), the
oneDNN fused kinds kept apart (e.g. _FusedConv2D: convolution + batch norm or bias + ReLU).
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

import _paths  # noqa: F401  (puts src/ on the path)
from _machine import cpu_line
from facenet_tf import precision as precision_lib
from facenet_tf import tf_setup



def timed(sess, fetch, feed, seconds):
    """Median seconds of one sess.run(fetch) over about `seconds` (after a warm-up call)."""
    sess.run(fetch, feed)
    times, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 3:
        t0 = time.perf_counter()
        sess.run(fetch, feed)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def kernel_timers(tf1, tf, sessions):
    """[(row, dtype, flops per call, images per call, run)] of the matmul and conv kernels in float32
    and bfloat16; their sessions are appended to `sessions`."""
    timers = []
    n = 2048
    batch, size, channels = 32, 56, 128
    conv_flops = 2.0 * batch * size * size * channels * channels * 9
    for dtype in (tf.float32, tf.bfloat16):
        with tf1.Graph().as_default() as graph:
            a = tf.Variable(tf.cast(tf.random.normal([n, n], seed=1), dtype))
            b = tf.Variable(tf.cast(tf.random.normal([n, n], seed=2), dtype))
            product = tf.reduce_sum(tf.cast(tf.matmul(a, b), tf.float32))
            x = tf.Variable(tf.cast(tf.random.normal([batch, size, size, channels], seed=3), dtype))
            w = tf.Variable(tf.cast(tf.random.normal([3, 3, channels, channels], seed=4) * 0.05, dtype))
            conv = tf.reduce_sum(tf.cast(tf.nn.conv2d(x, w, 1, 'SAME'), tf.float32))
        sess = tf1.Session(graph=graph, config=tf_setup.session_config('fp32'))
        sessions.append(sess)
        sess.run(tf1.variables_initializer(graph.get_collection('variables')))
        name = 'fp32' if dtype == tf.float32 else 'bf16'
        timers.append(('matmul %dx%d' % (n, n), name, 2.0 * n ** 3, 0, (sess, product, None)))
        timers.append(('conv 3x3 %d->%d' % (channels, channels), name, conv_flops, 0, (sess, conv, None)))
    return timers


def op_shares(tf1, sess, fetch, feed, calls=3):
    """[(op kind, share of the summed op time)] over `calls` traced runs, largest first."""
    totals = {}
    for _ in range(calls):
        metadata = tf1.RunMetadata()
        sess.run(fetch, feed, options=tf1.RunOptions(trace_level=tf1.RunOptions.FULL_TRACE), run_metadata=metadata)
        for device in metadata.step_stats.dev_stats:
            for node in device.node_stats:
                kind = node.timeline_label.split('(')[0].split(' = ')[-1].strip() or node.node_name
                totals[kind] = totals.get(kind, 0) + node.op_end_rel_micros - node.op_start_rel_micros
    whole = float(sum(totals.values())) or 1.0
    return sorted(((kind, t / whole) for kind, t in totals.items()), key=lambda item: -item[1])


def randomise_statistics(tf1, sess):
    """Give the batch norms trained-looking offsets and moving statistics: at their initial values
    (zeros, ones) a folded batch norm's bias is zero and grappler drops it, which a trained model
    never sees."""
    state = np.random.RandomState(1)
    for var in tf1.global_variables():
        name = var.op.name.rsplit('/', 1)[-1]
        shape = var.shape.as_list()
        if name in ('beta', 'moving_mean'):
            var.load(state.normal(0, 0.1, shape).astype(np.float32), sess)
        elif name == 'moving_variance':
            var.load(state.uniform(0.5, 1.5, shape).astype(np.float32), sess)


def forward_timers(tf1, tf, batch_size, image_size, sessions, model=None):
    """(timers as kernel_timers, flops per image) of the network's forward pass: InceptionResnetV1
    with random weights (randomise_statistics), frozen, in fp32 and bf16 as loaded and in bf16 with
    its batch norms folded into the convolutions; with `model`, that model loaded into a bf16 session
    as it is (before folding) and as the tools open it (runtimes.open_model: folded in bf16) in fp32
    and bf16."""
    from facenet_tf import model_io, runtimes
    from facenet_tf.model_freeze import fold_batch_norms, freeze_session
    from facenet_tf.models import inception_resnet_v1
    with tf1.Graph().as_default() as graph:
        images = tf1.placeholder(tf.float32, [batch_size, image_size, image_size, 3], name='input')
        prelogits, _ = inception_resnet_v1.inference(images, 1.0, phase_train=False)
        tf.nn.l2_normalize(prelogits, 1, name='embeddings')
        opts = tf1.profiler.ProfileOptionBuilder.float_operation()
        opts['output'] = 'none'
        flops = tf1.profiler.profile(graph, options=opts).total_float_ops
        with tf1.Session(graph=graph) as sess:
            sess.run(tf1.global_variables_initializer())
            randomise_statistics(tf1, sess)
            frozen = freeze_session(sess, ('embeddings',))
    folded, _ = fold_batch_norms(frozen)
    feed = {'input:0': np.random.RandomState(0).uniform(-1, 1, images.shape.as_list()).astype(np.float32)}
    timers = []
    for precision, graph_def, label in (('fp32', frozen, 'as loaded'), ('bf16', frozen, 'as loaded'),
                                        ('bf16', folded, 'batch norms folded')):
        with tf1.Graph().as_default() as run_graph:
            tf1.import_graph_def(graph_def, name='')
        sess = tf1.Session(graph=run_graph, config=tf_setup.session_config(precision))
        sessions.append(sess)
        timers.append(('forward, random weights, %s' % label, precision, flops, batch_size,
                       (sess, 'embeddings:0', feed)))
    name = os.path.basename(model.rstrip('/')) if model else None
    if model:   # before folding: loaded into a bf16 session as it is
        sess = tf1.Session(graph=tf1.Graph(), config=tf_setup.session_config('bf16'))
        sessions.append(sess)
        with sess.graph.as_default():
            model_io.load_for_inference(model, sess)
        timers.append(('forward, %s as loaded' % name, 'bf16', flops, batch_size,
                       (sess, 'embeddings:0', {'input:0': feed['input:0']})))
    for precision in ('fp32', 'bf16') if model else ():
        runner = runtimes.open_model(model, precision=precision)
        sessions.append(runner)
        timers.append(('forward, %s as the tools open it' % name, precision,
                       flops, batch_size, (runner.sess, runner.embeddings, {runner.images: feed['input:0']})))
    return timers, flops / batch_size


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--batch_size', type=int, default=100)
    parser.add_argument('--image_size', type=int, default=160)
    parser.add_argument('--seconds', type=float, default=3.0, help='Time spent on each row in each round.')
    parser.add_argument('--rounds', type=int, default=3,
                        help='Rounds over all rows, interleaved; each row keeps its best round.')
    parser.add_argument('--model', help='Also time this model file or folder as the tools open it (fp32, bf16).')
    parser.add_argument('--profile', action='store_true', help='Where the forward pass\'s time goes (op kinds).')
    args = parser.parse_args(argv)
    tf = tf_setup.configure()
    tf1 = tf.compat.v1
    print('CPU: %s; bf16 native: %s' % (cpu_line(), precision_lib.resolve_precision('auto') == 'bf16'))
    sessions = []
    timers = kernel_timers(tf1, tf, sessions)
    forward, flops_per_image = forward_timers(tf1, tf, args.batch_size, args.image_size, sessions,
                                              os.path.expanduser(args.model) if args.model else None)
    timers += forward
    best = [float('inf')] * len(timers)
    for round_index in range(args.rounds):
        for i, (row, precision, _, _, (sess, fetch, feed)) in enumerate(timers):
            best[i] = min(best[i], timed(sess, fetch, feed, args.seconds))
        print('round %d of %d done (load average %.1f)' % (round_index + 1, args.rounds, os.getloadavg()[0]),
              file=sys.stderr)
    if args.profile:
        for row, precision, _, images, (sess, fetch, feed) in timers:
            if images:
                print('%s %s, share of the op time: %s' % (row, precision, ', '.join(
                    '%s %.1f%%' % (kind, 100 * share) for kind, share in op_shares(tf1, sess, fetch, feed)[:12])))
    gflops = [flops / seconds / 1e9 for (_, _, flops, _, _), seconds in zip(timers, best)]
    ceiling = {p: max(g for (_, q, _, images, _), g in zip(timers, gflops) if q == p and not images)
               for p in ('fp32', 'bf16')}
    print('forward pass: %.2f GFLOP per image (%d x %d); best of %d rounds of %.0f s a row'
          % (flops_per_image / 1e9, args.image_size, args.image_size, args.rounds, args.seconds))
    print('| row | precision | GFLOP/s | of the ceiling | images/s |')
    print('| --- | --- | ---: | ---: | ---: |')
    for (row, precision, _, images, _), g, seconds in zip(timers, gflops, best):
        print('| %s | %s | %.0f | %.0f%% | %s |' % (row, precision, g, 100 * g / ceiling[precision],
                                                   '%.1f' % (images / seconds) if images else ''))
    print('ceiling = the faster kernel row of each precision; bf16 / fp32 ceiling: %.2fx'
          % (ceiling['bf16'] / ceiling['fp32']))
    for sess in sessions:
        sess.close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
