"""The machine's ceiling: TensorFlow's matrix-product and convolution throughput in fp32 and bf16 on
this CPU, and the embedding forward pass (InceptionResnetV1, phase_train False, random weights) as a
fraction of it. Every speed figure of docs/benchmarks.md is read against this table.

    python benchmarks/bench_ceiling.py [--batch_size 100] [--image_size 160] [--seconds 3] [--profile]

Rows:
- matmul: [N, N] x [N, N] products (N = 2048), 2 N^3 flops each, in float32 and in bfloat16 (tensors of
  that type: oneDNN's native bf16 kernels where the CPU has avx512_bf16/amx_bf16);
- conv: a 3x3 convolution of 128 into 128 channels on [32, 56, 56, 128] (the shape class of the
  network's blocks), SAME padding, in float32 and bfloat16;
- forward: the network at --batch_size, fp32 and bf16 (the session's oneDNN bf16 rewrite, as
  `--precision bf16`); its flops are counted by TensorFlow's profiler on the graph (2 per multiply-add).
Each row runs for about --seconds after one warm-up call; GFLOP/s = flops / median time of a call.
--profile: where the forward pass's time goes in each precision, from TensorFlow's trace of 3 calls:
the op kinds' shares of the summed op time (kernels run two at a time on 2 cores, so shares, not
seconds), the oneDNN fused kinds kept apart (e.g. _FusedConv2D: convolution + batch norm + ReLU).
"""
import argparse
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


def kernel_rows(tf1, tf, seconds):
    """[(row, dtype, GFLOP/s)] of the matmul and conv kernels in float32 and bfloat16."""
    rows = []
    n = 2048
    batch, size, channels = 32, 56, 128
    conv_flops = 2.0 * batch * size * size * channels * channels * 9
    for dtype in (tf.float32, tf.bfloat16):
        with tf1.Graph().as_default() as graph:
            a = tf.cast(tf.random.normal([n, n], seed=1), dtype)
            b = tf.cast(tf.random.normal([n, n], seed=2), dtype)
            a, b = tf.Variable(a), tf.Variable(b)
            product = tf.reduce_sum(tf.cast(tf.matmul(a, b), tf.float32))
            x = tf.Variable(tf.cast(tf.random.normal([batch, size, size, channels], seed=3), dtype))
            w = tf.Variable(tf.cast(tf.random.normal([3, 3, channels, channels], seed=4) * 0.05, dtype))
            conv = tf.reduce_sum(tf.cast(tf.nn.conv2d(x, w, 1, 'SAME'), tf.float32))
            with tf1.Session(graph=graph, config=tf_setup.session_config('fp32')) as sess:
                sess.run(tf1.global_variables_initializer())
                name = 'fp32' if dtype == tf.float32 else 'bf16'
                rows.append(('matmul %dx%d' % (n, n), name, 2.0 * n ** 3 / timed(sess, product, None, seconds) / 1e9))
                rows.append(('conv 3x3 %d->%d' % (channels, channels), name,
                             conv_flops / timed(sess, conv, None, seconds) / 1e9))
    return rows


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


def forward_rows(tf1, tf, batch_size, image_size, seconds, profile=False):
    """[(row, precision, GFLOP/s, images/s)] of the network's forward pass."""
    from facenet_tf.models import inception_resnet_v1
    with tf1.Graph().as_default() as graph:
        images = tf1.placeholder(tf.float32, [batch_size, image_size, image_size, 3], name='input')
        prelogits, _ = inception_resnet_v1.inference(images, 1.0, phase_train=False)
        embeddings = tf.nn.l2_normalize(prelogits, 1)
        opts = tf1.profiler.ProfileOptionBuilder.float_operation()
        opts['output'] = 'none'
        flops = tf1.profiler.profile(graph, options=opts).total_float_ops
        feed = {images: np.random.RandomState(0).uniform(-1, 1, images.shape.as_list()).astype(np.float32)}
        rows = []
        for precision in ('fp32', 'bf16'):
            with tf1.Session(graph=graph, config=tf_setup.session_config(precision)) as sess:
                sess.run(tf1.global_variables_initializer())
                seconds_per_call = timed(sess, embeddings, feed, seconds)
                if profile:
                    shares = op_shares(tf1, sess, embeddings, feed)
                    print('%s forward, share of the op time: %s' % (precision, ', '.join(
                        '%s %.1f%%' % (kind, 100 * share) for kind, share in shares[:12])))
            rows.append(('forward InceptionResnetV1 batch %d' % batch_size, precision,
                         flops / seconds_per_call / 1e9, batch_size / seconds_per_call))
    return rows, flops


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--batch_size', type=int, default=100)
    parser.add_argument('--image_size', type=int, default=160)
    parser.add_argument('--seconds', type=float, default=3.0, help='Time spent on each row.')
    parser.add_argument('--profile', action='store_true', help='Where the forward pass\'s time goes (op kinds).')
    args = parser.parse_args(argv)
    tf = tf_setup.configure()
    tf1 = tf.compat.v1
    print('CPU: %s; bf16 native: %s' % (cpu_line(), precision_lib.resolve_precision('auto') == 'bf16'))
    kernels = kernel_rows(tf1, tf, args.seconds)
    forward, flops = forward_rows(tf1, tf, args.batch_size, args.image_size, args.seconds, args.profile)
    ceiling = {p: max(g for _, q, g in kernels if q == p) for p in ('fp32', 'bf16')}
    print('forward pass: %.2f GFLOP per image (%d x %d)' % (flops / args.batch_size / 1e9, args.image_size,
                                                            args.image_size))
    print('| row | precision | GFLOP/s | of the ceiling | images/s |')
    print('| --- | --- | ---: | ---: | ---: |')
    for row, precision, gflops in kernels:
        print('| %s | %s | %.0f | %.0f%% | |' % (row, precision, gflops, 100 * gflops / ceiling[precision]))
    for row, precision, gflops, rate in forward:
        print('| %s | %s | %.0f | %.0f%% | %.1f |' % (row, precision, gflops, 100 * gflops / ceiling[precision], rate))
    print('ceiling = the faster kernel row of each precision; bf16 / fp32 ceiling: %.2fx'
          % (ceiling['bf16'] / ceiling['fp32']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
