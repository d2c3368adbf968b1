"""Embedding many image files (or encoded images) through a loaded model, in batches.

The input side is the classic evaluation pipeline written with tf.data in a graph and session of
its own: decode (3 channels), central crop or pad to image_size, per-image standardisation or fixed
standardisation (x - 127.5) / 128, and optionally the horizontally flipped copy. Decoding runs on
background threads, a few batches ahead, while the model computes the current batch (fed as a numpy
array to `input:0` with `phase_train:0` = False). Any model graph with that contract works: a frozen
.pb, a restored checkpoint, or the graph of a training script.
"""
import hashlib
import os

import numpy as np
import tensorflow as tf

from facenet_tf import model_io
from facenet_tf.cli import UserError
from facenet_tf.images import ImageReadError, read_rgb
from facenet_tf.progress import Progress

tf1 = tf.compat.v1

PREFETCH_BATCHES = 2


def preprocess(contents, image_size, fixed_standardization):
    """One encoded image (string tensor) to a float32 [image_size, image_size, 3] tensor."""
    image = tf.io.decode_image(contents, channels=3, expand_animations=False)
    image = tf.image.resize_with_crop_or_pad(image, image_size, image_size)
    if fixed_standardization:
        image = (tf.cast(image, tf.float32) - 127.5) / 128.0
    else:
        image = tf.image.per_image_standardization(image)
    image.set_shape((image_size, image_size, 3))
    return image


class ImageBatches(object):
    """Float image batches for a list of files or encoded images, decoded ahead on background threads.

    With flipped=True every item gives two consecutive images: the original, then its mirror image
    (flipped after standardisation, as the classic pipeline).
    """

    def __init__(self, image_size, batch_size, fixed_standardization=False, flipped=False,
                 encoded=False, parallel_calls=2):
        self.batch_size = int(batch_size)
        self.flipped = flipped
        self.graph = tf1.Graph()
        with self.graph.as_default():
            self._items = tf1.placeholder(tf.string, [None], name='items')
            dataset = tf.data.Dataset.from_tensor_slices(self._items)

            def load(item):
                contents = item if encoded else tf.io.read_file(item)
                image = preprocess(contents, image_size, fixed_standardization)
                if flipped:
                    return tf.stack([image, tf.image.flip_left_right(image)])
                return image

            dataset = dataset.map(load, num_parallel_calls=parallel_calls, deterministic=True)
            if flipped:
                dataset = dataset.unbatch()
            dataset = dataset.batch(self.batch_size).prefetch(PREFETCH_BATCHES)
            self._iterator = tf1.data.make_initializable_iterator(dataset)
            self._next = self._iterator.get_next()
        self.session = tf1.Session(graph=self.graph, config=tf1.ConfigProto(
            inter_op_parallelism_threads=parallel_calls, intra_op_parallelism_threads=1))

    def __call__(self, items):
        """Yield float32 batches for `items` (paths, or encoded image bytes when encoded=True)."""
        items = list(items)
        self.session.run(self._iterator.initializer, {self._items: np.array(items, dtype=object)})
        per_item = 2 if self.flipped else 1
        start = 0
        while True:
            try:
                batch = self.session.run(self._next)
            except tf.errors.OutOfRangeError:
                return
            except tf.errors.InvalidArgumentError as e:
                end = (start + self.batch_size + per_item - 1) // per_item
                raise UserError(_bad_image_message(items[start // per_item:end], e))
            start += batch.shape[0]
            yield batch

    def close(self):
        self.session.close()


def _bad_image_message(items, error):
    """Name the first item of a failed batch that cannot be read as an image."""
    for item in items:
        if isinstance(item, (bytes, bytearray)):
            continue
        try:
            read_rgb(item)
        except ImageReadError as e:
            return 'cannot read image %s: %s' % (item, e)
    return 'cannot decode an image: %s' % str(error).strip().splitlines()[0]


def unique_items(items):
    """(distinct items in first-seen order, index of each item in that list); bytes compared by hash."""
    index, distinct, where = {}, [], np.zeros(len(items), np.int64)
    for i, item in enumerate(items):
        key = hashlib.sha1(item).digest() if isinstance(item, bytes) else item
        if key not in index:
            index[key] = len(distinct)
            distinct.append(item)
        where[i] = index[key]
    return distinct, where


def _has_phase_train(model):
    """Whether the model file (.pb) or checkpoint folder (.meta) has a `phase_train` node, and the
    parsed GraphDef of a .pb (None for a folder)."""
    if os.path.isfile(model):
        graph_def = model_io.read_graph_def(model)
        return any(n.name == 'phase_train' for n in graph_def.node), graph_def
    if os.path.isdir(model):
        meta_file, _ = model_io.get_model_filenames(model)
        meta = tf1.MetaGraphDef()
        try:
            with open(os.path.join(model, meta_file), 'rb') as f:
                meta.ParseFromString(f.read())
        except Exception as e:  # protobuf raises its own DecodeError type
            raise UserError('cannot read %s: %s' % (meta_file, type(e).__name__))
        return any(n.name == 'phase_train' for n in meta.graph_def.node), None
    raise UserError('model not found: %s (give a frozen .pb file or a checkpoint folder)' % model)


def load_for_inference(model, session, use_moving_averages=False):
    """Load a .pb or checkpoint folder into session.graph (the default graph) with `phase_train`
    bound to a constant False: the optimiser then drops the training branches of batch norm.
    use_moving_averages: a checkpoint's moving averages instead of its variables."""
    model = os.path.expanduser(model)
    has_phase_train, graph_def = _has_phase_train(model)
    input_map = {'phase_train:0': tf.constant(False)} if has_phase_train else None
    if graph_def is not None:
        model_io.import_frozen_graph(graph_def, model, input_map, use_moving_averages)
        model_io.check_tensors(session.graph, model)
    else:
        model_io.load_model(model, input_map=input_map, session=session,
                            use_moving_averages=use_moving_averages)


def model_tensors(graph):
    """(input, phase_train or None, embeddings) tensors of a loaded model graph."""
    try:
        images = graph.get_tensor_by_name('input:0')
        embeddings = graph.get_tensor_by_name('embeddings:0')
    except KeyError as e:
        raise UserError('the model has no tensor %s' % e)
    try:
        phase_train = graph.get_tensor_by_name('phase_train:0')
    except KeyError:
        phase_train = None
    return images, phase_train, embeddings


def embed(sess, items, image_size=160, batch_size=100, fixed_standardization=False, use_flipped_images=False,
          encoded=False, label='Embedding', stream=None):
    """Embeddings (float32, one row per item) of image files or encoded images through the model in
    `sess`. With use_flipped_images a row is [embedding(original) | embedding(flipped)], as the classic
    validate_on_lfw. Prints a progress line (to stderr unless `stream` is given)."""
    if batch_size < 1:
        raise UserError('the batch size must be positive, got %d' % batch_size)
    images, phase_train, embeddings = model_tensors(sess.graph)
    nrof_flips = 2 if use_flipped_images else 1
    embedding_size = embeddings.shape.as_list()[-1] if embeddings.shape.rank else None
    if not len(items):
        return np.zeros((0, (embedding_size or 0) * nrof_flips), np.float32)
    nrof_images = len(items) * nrof_flips
    out = None if embedding_size is None else np.zeros((nrof_images, int(embedding_size)), np.float32)
    progress = Progress(nrof_images, label, 'img', stream=stream)
    reader = ImageBatches(image_size, batch_size, fixed_standardization, use_flipped_images, encoded)
    try:
        start = 0
        for batch in reader(items):
            feed = {images: batch}
            if phase_train is not None:
                feed[phase_train] = False
            emb = sess.run(embeddings, feed)
            if out is None:
                out = np.zeros((nrof_images, emb.shape[1]), np.float32)
            out[start:start + emb.shape[0]] = emb
            start += emb.shape[0]
            progress.update(emb.shape[0])
    finally:
        reader.close()
    (stream or progress.stream).write(progress.summary() + '\n')
    return out.reshape(len(items), -1)
