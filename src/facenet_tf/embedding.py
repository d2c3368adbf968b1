"""Embedding many image files (or encoded images) through a loaded model, in batches.

The input side is the classic evaluation pipeline, run by a small graph and session of its own:
decode (3 channels), central crop or pad to image_size, per-image standardisation or fixed
standardisation (x - 127.5) / 128, and optionally the horizontally flipped copy. The model computes a
batch fed as a numpy array to `input:0` (with `phase_train:0` = False when the graph has it); any
model graph with that contract works: a frozen .pb, a restored checkpoint, or the graph of a training
script.

Decoding is cheap next to the network (about 1.5-2 ms of CPU an image against 40 ms for
InceptionResnetV1 at 160x160) but must not get in its way: the network's threads wait for each other
inside every operation, so a decoder thread that takes a core from one of them stalls both. Images
are therefore decoded in chunks by helper threads at a lower scheduling priority (Linux: nice +10 for
those threads only), a few batches ahead, which use the moments the network leaves a core idle; when
the network needs a chunk that no helper has started, the calling thread decodes it at normal
priority, so a busy machine cannot starve the pipeline. The decoding session runs its operations in
the calling thread (inter_op_parallelism_threads=-1), so it starts no thread pools of its own, and
leaves TensorFlow's per-process pools (sized by the first session) to the model: a decoder created
before the model must not shrink them.
"""
import hashlib
import os
import sys
import threading

import numpy as np

from facenet_tf.model_io import load_for_inference, model_tensors  # noqa: F401  (re-exported: the tools import them here)
from facenet_tf.errors import FaceNetError
from facenet_tf.images import ImageReadError, read_rgb
from facenet_tf.progress import Progress
from facenet_tf.runtimes import as_embedder
from facenet_tf.tf_setup import configure, session_config

tf = configure()  # TensorFlow set up for TF1 graphs (see facenet_tf.tf_setup)
tf1 = tf.compat.v1

PREFETCH_BATCHES = 2    # batches decoded ahead of the network, at most
DECODE_CHUNK = 8        # items decoded per session call (the unit helpers and the caller share)
DECODE_THREADS = 2      # helper threads
DECODE_NICE = 10        # added to the helpers' niceness (Linux); 0 keeps their priority


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


def _lower_thread_priority(increment):
    """Raise the niceness of the calling thread only (Linux, where a thread id is a scheduling
    entity); elsewhere, or when not allowed, leave it."""
    if increment <= 0 or not sys.platform.startswith('linux'):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + increment))
    except (AttributeError, OSError):
        pass


class ImageBatches(object):
    """Float image batches for a list of files or encoded images, decoded ahead by low-priority
    helper threads (see the module docstring).

    With flipped=True every item gives two consecutive images: the original, then its mirror image
    (flipped after standardisation, as the classic pipeline). Batches hold batch_size images (the
    last one fewer); an item's two images may fall in two batches.
    """

    def __init__(self, image_size, batch_size, fixed_standardization=False, flipped=False,
                 encoded=False, parallel_calls=DECODE_THREADS, prefetch=PREFETCH_BATCHES,
                 chunk=DECODE_CHUNK, nice=DECODE_NICE):
        self.batch_size = int(batch_size)
        self.flipped = flipped
        self.per_item = 2 if flipped else 1
        self.threads = max(0, int(parallel_calls))
        self.prefetch = max(1, int(prefetch))
        self.chunk = max(1, int(chunk))
        self.nice = nice
        self.graph = tf1.Graph()
        with self.graph.as_default():
            self._items = tf1.placeholder(tf.string, [None], name='items')

            def load(item):
                contents = item if encoded else tf.io.read_file(item)
                image = preprocess(contents, image_size, fixed_standardization)
                if flipped:
                    return tf.stack([image, tf.image.flip_left_right(image)])
                return image

            shape = [2, image_size, image_size, 3] if flipped else [image_size, image_size, 3]
            images = tf.map_fn(load, self._items, fn_output_signature=tf.TensorSpec(shape, tf.float32),
                               parallel_iterations=1)
            self._images = tf.reshape(images, [-1, image_size, image_size, 3])
        # Negative inter-op threads: every operation runs in the thread that calls run(). TensorFlow
        # sizes its intra-op and inter-op pools once per process, from the first session: the intra-op
        # threads stay the default and the inter-op setting stays this session's own, so a decoder
        # made before the model leaves it every core.
        config = session_config(inter_op_threads=-1)
        config.use_per_session_threads = True
        self.session = tf1.Session(graph=self.graph, config=config)

    def decode(self, items):
        """float32 images of a list of items, decoded in the calling thread."""
        try:
            return self.session.run(self._images, {self._items: np.array(items, dtype=object)})
        except tf.errors.InvalidArgumentError as e:
            raise FaceNetError(_bad_image_message(items, e))

    def __call__(self, items, groups=None):
        """Yield float32 batches for `items` (paths, or encoded image bytes when encoded=True). With
        `groups` (item counts summing to len(items)) no batch spans two groups."""
        items = list(items)
        if not items:
            return
        feed = _ChunkFeed(self, items)
        try:
            for start, end in _batch_ranges(len(items), self.per_item, self.batch_size, groups):
                yield feed.images(start, end)
        finally:
            feed.stop()

    def close(self):
        self.session.close()


def _batch_ranges(nrof_items, per_item, batch_size, groups=None):
    """[start, end) image ranges of the batches: batch_size images each, cut at group ends."""
    ranges = []
    offset = 0
    for size in (groups if groups is not None else [nrof_items]):
        end = offset + size * per_item
        ranges += [(start, min(start + batch_size, end)) for start in range(offset, end, batch_size)]
        offset = end
    if offset != nrof_items * per_item:
        raise ValueError('the groups hold %d items, not %d' % (offset // per_item, nrof_items))
    return ranges


class _ChunkFeed(object):
    """Chunks of DECODE_CHUNK items decoded in order, by helper threads (up to `prefetch` batches
    ahead of the consumer) and by the consumer itself when it reaches a chunk nobody has claimed."""

    def __init__(self, reader, items):
        self.reader = reader
        self.items = items
        self.size = reader.chunk
        self.nrof_chunks = (len(items) + self.size - 1) // self.size
        self.results = [None] * self.nrof_chunks
        self.errors = [None] * self.nrof_chunks
        self.done = [False] * self.nrof_chunks
        self.next_claim = 0
        # Helpers stay within the consumer's batch and `prefetch` batches after it.
        ahead_items = (reader.prefetch + 1) * reader.batch_size // reader.per_item + 1
        self.ahead_chunks = max(1, (ahead_items + self.size - 1) // self.size)
        self.limit = min(self.nrof_chunks, self.ahead_chunks)    # helpers claim chunks below this
        self.stopping = False
        self.cond = threading.Condition()
        self.helpers = [threading.Thread(target=self._helper, name='embed-decode-%d' % i, daemon=True)
                        for i in range(reader.threads)]
        for helper in self.helpers:
            helper.start()

    def _decode(self, j):
        """Decode chunk j (claimed by the calling thread) and publish the result or the error."""
        result, error = None, None
        try:
            result = self.reader.decode(self.items[j * self.size:(j + 1) * self.size])
        except BaseException as e:  # handed to the consumer, raised there
            error = e
        with self.cond:
            self.results[j], self.errors[j], self.done[j] = result, error, True
            self.cond.notify_all()

    def _helper(self):
        _lower_thread_priority(self.reader.nice)
        while True:
            with self.cond:
                while not self.stopping and self.next_claim < self.nrof_chunks \
                        and self.next_claim >= self.limit:
                    self.cond.wait()
                if self.stopping or self.next_claim >= self.nrof_chunks:
                    return
                j = self.next_claim
                self.next_claim += 1
            self._decode(j)

    def _wait_for(self, j):
        """Block until chunk j is decoded, decoding unclaimed chunks up to j in this thread."""
        while True:
            with self.cond:
                if self.done[j]:
                    break
                if self.next_claim <= j:
                    claim = self.next_claim
                    self.next_claim += 1
                else:
                    self.cond.wait()
                    continue
            self._decode(claim)
        if self.errors[j] is not None:
            raise self.errors[j]

    def images(self, start, end):
        """The images [start, end) of the item list's image sequence, as one float32 array."""
        per_chunk = self.size * self.reader.per_item
        first, last = start // per_chunk, (end - 1) // per_chunk
        with self.cond:
            self.limit = min(self.nrof_chunks, max(self.limit, first + self.ahead_chunks))
            self.cond.notify_all()
        parts = []
        for j in range(first, last + 1):
            self._wait_for(j)
            lo = max(start - j * per_chunk, 0)
            hi = min(end - j * per_chunk, self.results[j].shape[0])
            parts.append(self.results[j][lo:hi])
        batch = parts[0] if len(parts) == 1 else np.concatenate(parts)
        total = len(self.items) * self.reader.per_item
        with self.cond:
            for j in range(first, last + 1):
                if (j + 1) * per_chunk <= end or end == total:
                    self.results[j] = None    # consumed: free the memory
        return batch

    def stop(self):
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        for helper in self.helpers:
            helper.join()


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


def embed(sess, items, image_size=160, batch_size=100, fixed_standardization=False, use_flipped_images=False,
          encoded=False, label='Embedding', stream=None, groups=None):
    """Embeddings (float32, one row per item) of image files or encoded images through the model in
    `sess` (a TensorFlow session holding a loaded model, or a runtimes.Embedder). With use_flipped_images a row is [embedding(original) | embedding(flipped)], as the classic
    validate_on_lfw. Prints a progress line (to stderr unless `stream` is given). With `groups`
    (item counts) no batch spans two groups: on CPU an image's embedding can differ in its last bits
    with its position in the batch and the batch's size, so runs that batch a group the same way
    give the same bits for it."""
    if batch_size < 1:
        raise FaceNetError('the batch size must be positive, got %d' % batch_size)
    runner = as_embedder(sess)
    nrof_flips = 2 if use_flipped_images else 1
    embedding_size = runner.embedding_size
    if not len(items):
        return np.zeros((0, (embedding_size or 0) * nrof_flips), np.float32)
    nrof_images = len(items) * nrof_flips
    out = None if embedding_size is None else np.zeros((nrof_images, int(embedding_size)), np.float32)
    progress = Progress(nrof_images, label, 'img', stream=stream)
    reader = ImageBatches(image_size, batch_size, fixed_standardization, use_flipped_images, encoded)
    try:
        start = 0
        for batch in reader(items, groups):
            emb = runner.embed(batch)
            if out is None:
                out = np.zeros((nrof_images, emb.shape[1]), np.float32)
            out[start:start + emb.shape[0]] = emb
            start += emb.shape[0]
            progress.update(emb.shape[0])
    finally:
        reader.close()
    (stream or progress.stream).write(progress.summary() + '\n')
    return out.reshape(len(items), -1)
