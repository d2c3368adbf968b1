"""facenet_tf.embedding input side: chunked decoding by low-priority helpers and the calling thread gives
the same images, in the same order, for every batch size, chunk size, helper count and flip mode."""
import io
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from facenet_tf import embedding
from facenet_tf.errors import FaceNetError

tf1 = tf.compat.v1
SIZE = 20


@pytest.fixture(scope='module')
def image_files(tmp_path_factory):
    """23 PNG/JPEG files of varied sizes and modes (RGB, grey, RGBA)."""
    base = tmp_path_factory.mktemp('imgs')
    rng = np.random.RandomState(3)
    files = []
    for i in range(23):
        h, w = 16 + (i % 5) * 3, 18 + (i % 3) * 4
        mode = ('RGB', 'L', 'RGBA')[i % 3]
        channels = {'RGB': 3, 'L': 1, 'RGBA': 4}[mode]
        data = rng.randint(0, 256, (h, w, channels)).astype(np.uint8)
        img = Image.fromarray(data[:, :, 0] if channels == 1 else data, mode)
        path = str(base / ('img%02d.%s' % (i, 'jpg' if i % 7 == 6 and mode != 'RGBA' else 'png')))
        img.save(path)
        files.append(path)
    return files


def _expected(files, fixed, flipped):
    """Each file through `preprocess` alone, then its mirror image when flipped."""
    with tf1.Graph().as_default(), tf1.Session() as sess:
        item = tf1.placeholder(tf.string, [])
        image = embedding.preprocess(tf.io.read_file(item), SIZE, fixed)
        out = []
        for f in files:
            x = sess.run(image, {item: f})
            out.append(x)
            if flipped:
                out.append(x[:, ::-1, :])
    return np.stack(out)


@pytest.mark.parametrize('fixed,flipped', [(True, False), (False, True)])
@pytest.mark.parametrize('batch_size,chunk,threads', [(1, 1, 2), (5, 3, 2), (7, 8, 1), (100, 4, 0), (6, 2, 3)])
def test_batches_equal_single_image_preprocessing(image_files, fixed, flipped, batch_size, chunk, threads):
    expected = _expected(image_files, fixed, flipped)
    reader = embedding.ImageBatches(SIZE, batch_size, fixed, flipped, parallel_calls=threads, chunk=chunk,
                                    prefetch=1)
    try:
        batches = list(reader(image_files))
        again = list(reader(image_files[:4]))    # the reader can be used again
    finally:
        reader.close()
    assert all(b.shape[0] == batch_size for b in batches[:-1])
    assert 1 <= batches[-1].shape[0] <= batch_size
    np.testing.assert_array_equal(np.concatenate(batches), expected)
    np.testing.assert_array_equal(np.concatenate(again), expected[:4 * (2 if flipped else 1)])


def test_encoded_items(image_files):
    encoded = []
    for f in image_files:
        with open(f, 'rb') as fh:
            encoded.append(fh.read())
    reader = embedding.ImageBatches(SIZE, 4, True, encoded=True, chunk=3)
    try:
        got = np.concatenate(list(reader(encoded)))
    finally:
        reader.close()
    np.testing.assert_array_equal(got, _expected(image_files, True, False))


@pytest.mark.parametrize('threads', [0, 2])
def test_bad_image_names_the_file(image_files, tmp_path, threads):
    bad = str(tmp_path / 'broken.png')
    with open(bad, 'wb') as f:
        f.write(b'not an image at all')
    items = image_files[:9] + [bad] + image_files[9:]
    reader = embedding.ImageBatches(SIZE, 4, parallel_calls=threads, chunk=2)
    try:
        with pytest.raises(FaceNetError) as e:
            list(reader(items))
    finally:
        reader.close()
    assert 'broken.png' in str(e.value)


def test_early_stop_leaves_no_helper_threads(image_files):
    import threading
    reader = embedding.ImageBatches(SIZE, 2, chunk=1, parallel_calls=2)
    try:
        gen = reader(image_files)
        next(gen)
        gen.close()
    finally:
        reader.close()
    assert not [t for t in threading.enumerate() if t.name.startswith('embed-decode-')]


def test_embed_same_for_any_batch_size(image_files):
    """A small network (conv + mean) as the model: rows identical for batch sizes 1, 5 and 64."""
    with tf1.Graph().as_default(), tf1.Session() as sess:
        images = tf1.placeholder(tf.float32, [None, SIZE, SIZE, 3], name='input')
        kernel = tf.constant(np.random.RandomState(0).standard_normal((3, 3, 3, 6)).astype(np.float32))
        features = tf.reduce_mean(tf.nn.relu(tf.nn.conv2d(images, kernel, 1, 'SAME')), [1, 2])
        tf.nn.l2_normalize(features, 1, 1e-10, name='embeddings')
        devnull = open(os.devnull, 'w')
        results = [embedding.embed(sess, image_files, SIZE, bs, True, True, stream=devnull) for bs in (1, 5, 64)]
        devnull.close()
    assert results[0].shape == (len(image_files), 12)
    for r in results[1:]:
        np.testing.assert_allclose(r, results[0], rtol=0, atol=1e-6)


THREADS_SCRIPT = '''
import os, sys
import numpy as np
from facenet_tf import tf_setup
tf = tf_setup.configure()
tf1 = tf.compat.v1
from facenet_tf import embedding

def decode():
    reader = embedding.ImageBatches(32, 1)
    reader.decode([sys.argv[2]])
    reader.close()

def model_session():
    graph = tf1.Graph()
    with graph.as_default():
        a = tf.constant(np.ones((256, 256), np.float32))
        product = tf.matmul(a, a)
    with tf1.Session(graph=graph, config=tf_setup.session_config()) as sess:
        sess.run(product)
        print(len(os.listdir('/proc/self/task')))

if sys.argv[1] == 'decoder-first':
    decode()
    model_session()
else:
    model_session()
    decode()
'''


@pytest.mark.skipif(not os.path.isdir('/proc/self/task') or len(os.sched_getaffinity(0)) < 2,
                    reason='counts threads in /proc/self/task; needs 2 or more CPUs')
def test_a_decoder_created_before_the_model_leaves_it_every_core(image_files, tmp_path):
    """TensorFlow sizes its intra-op pool once per process, from the first session: a decoder made
    before the model (as a tool that checks its inputs first does) must not shrink the model's pool.
    The model session starts as many threads whichever comes first."""
    script = tmp_path / 'threads.py'
    script.write_text(THREADS_SCRIPT)
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'src')
    env = dict(os.environ, PYTHONPATH=src + os.pathsep + os.environ.get('PYTHONPATH', ''))
    counts = {}
    for order in ('decoder-first', 'model-first'):
        out = subprocess.run([sys.executable, str(script), order, image_files[0]], env=env, capture_output=True,
                             text=True, check=True).stdout
        counts[order] = int(out.split()[-1])
    assert counts['decoder-first'] == counts['model-first'], counts
