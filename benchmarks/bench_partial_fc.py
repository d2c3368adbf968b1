"""Step time and logits size of the classifier layer with sampled class centres (train_softmax.py
--sample_rate) against the full margin softmax, on many synthetic classes.

The graph is the training step of train_softmax.py without the image network: random features go
through one trainable fully connected layer to the embedding, then the CosFace head (full, or
PartialFC at each rate), the classic train op (optimizer, moving averages). Random labels; the
logits' bytes are batch x drawn classes x 4.

Usage: python benchmarks/bench_partial_fc.py [--nrof_classes 100000] [--rates 1 0.5 0.1]
           [--batch_size 90] [--embedding_size 128] [--optimizer MOM] [--steps 20]
"""
import argparse
import time

import numpy as np
import _paths  # noqa: F401 (src/ on sys.path)

from facenet_tf import tf_setup, training
from facenet_tf.training import losses, partial_fc
from facenet_tf.models import layers

tf = tf_setup.configure()
tf1 = tf.compat.v1


def step_time(args, rate):
    """(median seconds per step, drawn classes) for one sample rate (1 = the full margin softmax)."""
    with tf.Graph().as_default():
        tf1.set_random_seed(0)
        features = tf.random.normal([args.batch_size, 256])
        labels = tf.random.uniform([args.batch_size], 0, args.nrof_classes, tf.int64)
        prelogits = layers.fully_connected(features, args.embedding_size, activation_fn=None, scope='Bottleneck')
        global_step = tf1.Variable(0, trainable=False, name='global_step')
        if rate < 1.0:
            head = partial_fc.partial_margin_logits(prelogits, labels, args.nrof_classes, rate, 64.0,
                                                    *losses.MARGIN_DEFAULTS['cosface'], weight_decay=5e-4)
            logits, class_labels, extra = head.logits, head.labels, [head.decay]
        else:
            logits, _ = losses.margin_logits(prelogits, labels, args.nrof_classes, 64.0,
                                             *losses.MARGIN_DEFAULTS['cosface'], weight_decay=5e-4)
            class_labels, extra = labels, tf1.get_collection(tf1.GraphKeys.REGULARIZATION_LOSSES)
        loss = tf.add_n([losses.cross_entropy(logits, class_labels)] + extra)
        train_op, _, _ = training.build_train_op(loss, global_step, args.optimizer, 0.01, 0.9999,
                                                 tf1.global_variables(), log_histograms=False)
        with tf1.Session(config=tf_setup.session_config()) as sess:
            sess.run(tf1.global_variables_initializer())
            times = []
            for _ in range(args.steps + 2):
                start = time.perf_counter()
                _, width = sess.run([train_op, tf.shape(logits)[1]])
                times.append(time.perf_counter() - start)
    return float(np.median(times[2:])), int(width)


def main(args):
    print('%d classes, batch %d, %d-D embeddings, %s, %d steps per rate (median)'
          % (args.nrof_classes, args.batch_size, args.embedding_size, args.optimizer, args.steps))
    full = None
    for rate in args.rates:
        seconds, width = step_time(args, rate)
        full = full or (seconds, width)
        print('sample_rate %-5g %6d classes drawn: %7.1f ms per step (%.1fx), logits %6.1f MB (%.1fx)'
              % (rate, width, seconds * 1e3, full[0] / seconds, args.batch_size * width * 4 / 1e6,
                 full[1] / float(width)))


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--nrof_classes', type=int, default=100000)
    parser.add_argument('--rates', type=float, nargs='+', default=[1.0, 0.5, 0.1])
    parser.add_argument('--batch_size', type=int, default=90)
    parser.add_argument('--embedding_size', type=int, default=128)
    parser.add_argument('--optimizer', type=str, default='MOM', choices=list(training.OPTIMIZERS))
    parser.add_argument('--steps', type=int, default=20)
    return parser.parse_args(argv)


if __name__ == '__main__':
    main(parse_arguments())
