"""Images per second of a network on this CPU: the embedding forward pass (default: the 512-D
InceptionResnetV1 at batch 100, 160x160, phase_train False) in fp32 and bf16, or a training step.

    python benchmarks/bench_embed.py [--model_def models.inception_resnet_v1] [--batch_size 100]
        [--image_size 160] [--batches 5] [--precisions fp32,bf16] [--graphs constant,placeholder]
        [--onednn on|off|default] [--train_step]

Forward graphs: `constant` builds the network with phase_train=False (one path, no tf.cond: what
embedding scripts should use); `placeholder` feeds phase_train as the classic graphs did. Weights are
the network's own seeded random initialisation; bf16 rows print the worst cosine between their
embeddings and the fp32 ones. --train_step times one triplet-loss Adagrad step per batch instead
(phase_train True, weight decay 5e-4, as train_tripletloss). oneDNN must be chosen before TensorFlow
loads, hence --onednn (default: on).

--images LIST_OR_FOLDER times `facenet_tf.embedding.embed` (decode + preprocess + network, as
validate_on_lfw.py) against the bare forward pass of the same network on the same batches, already
decoded in memory, alternately for --rounds rounds, and prints each pair and the ratio embed/forward
(close to 1 when decoding costs the network nothing). The model is --model (.pb or checkpoint folder,
e.g. the reference-weights one that bench_validate.py writes) or --model_def with its random initialisation.
Measured on the 2-core AMD EPYC (AVX2, TensorFlow 2.21, oneDNN on) with 1,714 aligned LFW crops
(every 7th file of lfw_mtcnnpy_160, sorted) and the reference-weights InceptionResnetV1 .pb:

    python benchmarks/bench_embed.py --images /tmp/list1714.txt --model /tmp/ref.pb \
        --batch_size 100 --max_images 600 --rounds 3 [--use_fixed_image_standardization]
"""
import argparse
import importlib
import os
import sys
import time

import _paths  # noqa: F401  (puts src/ on the path)
from facenet_tf import tf_setup
from facenet_tf.cli import int_at_least, non_negative_int, positive_int, run
from facenet_tf.errors import FaceNetError

ONEDNN_CHOICES = ('on', 'off', 'default')


def _set_up_tensorflow(onednn):
    """Apply --onednn, then load TensorFlow (which reads it only once, when it loads)."""
    if onednn != 'default':
        os.environ['TF_ENABLE_ONEDNN_OPTS'] = '1' if onednn == 'on' else '0'
    return tf_setup.configure()


def _network(model_def):
    try:
        return importlib.import_module(model_def)
    except ImportError as e:
        raise FaceNetError('cannot import --model_def %s (%s)' % (model_def, e))


def _build(tf, network, graph_kind, image_size, train_step):
    """(images placeholder, fetch, extra feed) for one configuration."""
    tf1 = tf.compat.v1
    tf1.set_random_seed(1)
    images = tf1.placeholder(tf.float32, [None, image_size, image_size, 3], name='input')
    if train_step:
        phase_train, feed = True, {}
    elif graph_kind == 'constant':
        phase_train, feed = False, {}
    else:
        phase_train = tf1.placeholder(tf.bool, name='phase_train')
        feed = {phase_train: False}
    prelogits, _ = network.inference(images, 0.8 if train_step else 1.0, phase_train=phase_train,
                                     bottleneck_layer_size=128 if train_step else 512,
                                     weight_decay=5e-4 if train_step else 0.0)
    embeddings = tf.nn.l2_normalize(prelogits, 1, 1e-10, name='embeddings')
    if not train_step:
        return images, embeddings, feed
    anchor, positive, negative = tf.unstack(tf.reshape(embeddings, [-1, 3, int(embeddings.shape[1])]), 3, 1)
    triplet = tf.reduce_mean(tf.maximum(tf.reduce_sum(tf.square(anchor - positive), 1)
                                        - tf.reduce_sum(tf.square(anchor - negative), 1) + 0.2, 0.0))
    total = tf.add_n([triplet] + tf1.get_collection(tf1.GraphKeys.REGULARIZATION_LOSSES))
    step = tf1.train.AdagradOptimizer(0.1).minimize(total)
    with tf.control_dependencies([step]):
        fetch = tf.identity(triplet)
    return images, fetch, feed


def _time_batches(sess, fetch, feed, batches, warmup):
    """Wall and process-CPU seconds of each timed batch, and the last output."""
    from facenet_tf.progress import Progress
    for _ in range(warmup):
        out = sess.run(fetch, feed)
    walls, cpus = [], []
    progress = Progress(batches, label='  batches', unit='batch')
    for _ in range(batches):
        wall, cpu = time.perf_counter(), time.process_time()
        out = sess.run(fetch, feed)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        progress.update(1)
    return walls, cpus, out


def _split(text, allowed, flag):
    items = [item for item in text.split(',') if item]
    for item in items:
        if item not in allowed:
            raise FaceNetError('unknown %s value %r (choose from %s)' % (flag, item, ', '.join(allowed)))
    if not items:
        raise FaceNetError('%s is empty' % flag)
    return items


def _image_files(source, max_images):
    """Paths of a list file (one path a line) or of the images under a folder (sorted), at most
    max_images (0: all)."""
    source = os.path.expanduser(source)
    if os.path.isdir(source):
        files = sorted(os.path.join(d, f) for d, _, names in os.walk(source) for f in names
                       if f.lower().endswith(('.png', '.jpg', '.jpeg')))
    elif os.path.isfile(source):
        with open(source) as f:
            files = [line.strip() for line in f if line.strip()]
    else:
        raise FaceNetError('--images: no such list file or folder: %s' % source)
    if not files:
        raise FaceNetError('--images: no images in %s' % source)
    return files[:max_images] if max_images > 0 else files


def _pipeline(args):
    """Embed rate (files through embedding.embed) against the bare forward rate, alternately."""
    import numpy as np
    tf = _set_up_tensorflow(args.onednn)
    from tensorflow.python.util import _pywrap_util_port
    from facenet_tf import embedding
    from facenet_tf.tf_setup import session_config
    tf1 = tf.compat.v1

    files = _image_files(args.images, args.max_images)
    n = len(files)
    print('embed vs forward: %d images of %s, batch %d, %dx%d, %s standardisation, model %s, oneDNN %s, '
          '%d CPUs, TF %s' % (n, args.images, args.batch_size, args.image_size, args.image_size,
                              'fixed' if args.use_fixed_image_standardization else 'per-image',
                              args.model or args.model_def + ' (random init)',
                              'on' if _pywrap_util_port.IsMklEnabled() else 'off', os.cpu_count(), tf.__version__))
    sys.stdout.flush()
    # Full priority here: this measures what decoding costs, not how it yields to the network.
    reader = embedding.ImageBatches(args.image_size, args.batch_size, args.use_fixed_image_standardization, nice=0)
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        batches = list(reader(files))
    finally:
        reader.close()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print('decode only (%d helper threads + caller): %.1f img/s, %.2f ms of CPU an image'
          % (embedding.DECODE_THREADS, n / wall, 1000 * cpu / n))
    sys.stdout.flush()
    with tf.Graph().as_default():
        config = session_config('fp32', args.intra_op_threads, args.inter_op_threads)
        with tf1.Session(config=config) as sess:
            if args.model:
                embedding.load_for_inference(args.model, sess)
            else:
                _build(tf, _network(args.model_def), 'constant', args.image_size, False)
                sess.run(tf1.global_variables_initializer())
            images, phase_train, embeddings = embedding.model_tensors(sess.graph)
            extra = {} if phase_train is None else {phase_train: False}

            def forward():
                return np.concatenate([sess.run(embeddings, {**extra, images: b}) for b in batches])

            def embed():
                return embedding.embed(sess, files, args.image_size, args.batch_size,
                                       args.use_fixed_image_standardization, label='  embed')

            sess.run(embeddings, {**extra, images: batches[0][:8]})
            rows = []
            for r in range(args.rounds):
                rates = []
                for name, fn in (('forward', forward), ('embed', embed)):
                    wall, cpu = time.perf_counter(), time.process_time()
                    out = fn()
                    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                    rates.append((n / wall, 1000 * cpu / n, out))
                    print('round %d %-7s %6.1f img/s  %5.1f ms CPU/img  load %.1f'
                          % (r + 1, name, n / wall, 1000 * cpu / n, os.getloadavg()[0]))
                    sys.stdout.flush()
                diff = float(np.abs(rates[0][2] - rates[1][2]).max())
                rows.append((rates[0][0], rates[1][0], rates[1][0] / rates[0][0], diff))
    print('\n%-6s %12s %12s %8s %10s' % ('round', 'forward/s', 'embed/s', 'ratio', 'max |diff|'))
    for r, (fwd, emb, ratio, diff) in enumerate(rows):
        print('%-6d %12.1f %12.1f %8.3f %10.1e' % (r + 1, fwd, emb, ratio, diff))
    print('median ratio embed/forward: %.3f' % float(np.median([row[2] for row in rows])))


def main(args):
    if args.images:
        return _pipeline(args)
    import numpy as np
    tf = _set_up_tensorflow(args.onednn)
    from tensorflow.python.util import _pywrap_util_port
    from facenet_tf.precision import PRECISIONS
    from facenet_tf.tf_setup import session_config
    tf1 = tf.compat.v1

    precisions = _split(args.precisions, PRECISIONS, '--precisions')
    graphs = ['train'] if args.train_step else _split(args.graphs, ('constant', 'placeholder'), '--graphs')
    if args.train_step and args.batch_size % 3:
        raise FaceNetError('--train_step needs a --batch_size divisible by 3 (triplets)')
    network = _network(args.model_def)

    data = np.random.RandomState(0).standard_normal(
        (args.batch_size, args.image_size, args.image_size, 3)).astype(np.float32)
    print('%s %s, batch %d, %dx%d, oneDNN %s, %d CPUs, TF %s'
          % (args.model_def, 'training step' if args.train_step else 'forward', args.batch_size,
             args.image_size, args.image_size, 'on' if _pywrap_util_port.IsMklEnabled() else 'off',
             os.cpu_count(), tf.__version__))
    rows = []
    for graph_kind in graphs:
        with tf.Graph().as_default():
            images, fetch, feed = _build(tf, network, graph_kind, args.image_size, args.train_step)
            feed = dict(feed)
            feed[images] = data
            init = tf1.global_variables_initializer()
            reference = None
            for precision in precisions:
                config = session_config(precision, args.intra_op_threads, args.inter_op_threads)
                with tf1.Session(config=config) as sess:
                    sess.run(init)
                    print('%s graph, %s:' % (graph_kind, precision))
                    walls, cpus, out = _time_batches(sess, fetch, feed, args.batches, args.warmup)
                cosine = None
                if not args.train_step:
                    if precision == 'fp32':
                        reference = out
                    elif reference is not None:
                        cosine = np.sum(out * reference, axis=1).min() / np.linalg.norm(out, axis=1).max()
                rows.append((graph_kind, precision, args.batch_size / np.median(walls),
                             args.batch_size / min(walls), np.median(cpus), cosine))
    print('\n%-12s %-5s %13s %11s %12s %11s' % ('graph', 'prec', 'img/s median', 'img/s best',
                                              'cpu-s/batch', 'min cosine'))
    for graph_kind, precision, median, best, cpu, cosine in rows:
        print('%-12s %-5s %13.1f %11.1f %12.2f %11s' % (graph_kind, precision, median, best, cpu,
                                                      '-' if cosine is None else '%.6f' % cosine))


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model_def', default='models.inception_resnet_v1',
                        help='Network module with an inference() function.')
    parser.add_argument('--batch_size', type=positive_int, default=100, help='Images per batch.')
    parser.add_argument('--image_size', type=int_at_least(32), default=160, help='Input side in pixels.')
    parser.add_argument('--batches', type=positive_int, default=5, help='Timed batches per configuration.')
    parser.add_argument('--warmup', type=non_negative_int, default=1, help='Untimed batches first.')
    parser.add_argument('--precisions', default='fp32,bf16', help='Comma-separated: fp32, bf16.')
    parser.add_argument('--graphs', default='constant',
                        help='Forward graphs, comma-separated: constant (phase_train=False), '
                             'placeholder (fed bool, as the classic graphs).')
    parser.add_argument('--train_step', action='store_true',
                        help='Time a triplet-loss Adagrad training step instead of the forward pass.')
    parser.add_argument('--intra_op_threads', type=int, default=0, help='0 = TensorFlow default.')
    parser.add_argument('--inter_op_threads', type=int, default=0, help='0 = TensorFlow default.')
    parser.add_argument('--images', default='',
                        help='Time embedding.embed on these images (a list file, one path a line, or a '
                             'folder) against the bare forward pass, alternately.')
    parser.add_argument('--model', default='', help='With --images: a .pb or checkpoint folder '
                        '(default: --model_def with random initialisation).')
    parser.add_argument('--max_images', type=int, default=1200, help='With --images: at most this many '
                        '(0: all).')
    parser.add_argument('--rounds', type=positive_int, default=3, help='With --images: forward/embed pairs.')
    parser.add_argument('--use_fixed_image_standardization', action='store_true',
                        help='With --images: (x - 127.5) / 128 instead of per-image standardisation.')
    parser.add_argument('--onednn', choices=ONEDNN_CHOICES, default='on',
                        help='Set TF_ENABLE_ONEDNN_OPTS before TensorFlow loads.')
    return parser.parse_args(argv)


if __name__ == '__main__':
    sys.exit(run(main, parse_arguments(sys.argv[1:])))
