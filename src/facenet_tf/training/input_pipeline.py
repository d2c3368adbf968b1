"""The classic training input pipeline: a FIFOQueue of file names, preprocessing threads, batch_join.

The queue holds groups of `group_size` images (3 for triplets, 1 for classifier training): a string
path, an int64 label and an int32 control word per image, filled with `enqueue_many`. Each of the
`nrof_preprocess_threads` readers dequeues one group, decodes and preprocesses its images as the
group's control words say, and `batch_join` enqueues the group atomically, so a batch whose size is a
multiple of group_size keeps every group together and in order. The label travels with its image,
so callers put an index there when they need to put results back in order (the embedding pass).

Control bits (the classic values): RANDOM_ROTATE (uniform +-10 degrees, in-graph projective
transform), RANDOM_CROP (random image_size crop; otherwise a central crop), RANDOM_FLIP,
FIXED_STANDARDIZATION ((x - 127.5) / 128; otherwise per-image standardisation), FLIP (always flip),
and beyond the classic ones RANDOM_ERASE (half of the images get a random rectangle of noise).
Images of another size than image_size are cropped around the centre or zero-padded, never resized:
align the faces at image_size, or larger (e.g. 182 for 160) with random crops.

Training sets are image folders (the classic layout) or indexed record files (`train.rec`): record
images are queued as `record:<key>` strings, which `record_file_reader` fetches from the record file,
while any other string is read as a file (so LFW images go through the same queue during training).
Encoded images of a `.bin` verification set are queued themselves behind ENCODED_PREFIX (a NUL byte,
which no path holds), and `file_reader(..., encoded=True)` passes them on undecoded.
"""
import collections
import math
import os
import sys

import numpy as np

from facenet_tf import dataset as dataset_io
from facenet_tf import recordio
from facenet_tf.errors import FaceNetError
from facenet_tf.tf_setup import configure

tf = configure()  # TensorFlow set up for TF1 graphs (see facenet_tf.tf_setup)
tf1 = tf.compat.v1

RANDOM_ROTATE = 1
RANDOM_CROP = 2
RANDOM_FLIP = 4
FIXED_STANDARDIZATION = 8
FLIP = 16
RANDOM_ERASE = 32

MAX_ROTATION_DEGREES = 10.0
ERASE_PROBABILITY = 0.5
ERASE_AREA = (0.02, 0.4)        # share of the image a rectangle covers
ERASE_ASPECT = (0.3, 1 / 0.3)   # its height / width

RECORD_PREFIX = 'record:'
ENCODED_PREFIX = b'\0encoded:'

InputQueue = collections.namedtuple(
    'InputQueue', 'queue enqueue_op image_paths_placeholder labels_placeholder control_placeholder')


def control_flags(random_crop=False, random_flip=False, random_rotate=False, fixed_standardization=False,
                  flip=False, random_erase=False):
    """The control word for a set of preprocessing options."""
    return ((RANDOM_ROTATE if random_rotate else 0) | (RANDOM_CROP if random_crop else 0)
            | (RANDOM_FLIP if random_flip else 0) | (FIXED_STANDARDIZATION if fixed_standardization else 0)
            | (FLIP if flip else 0) | (RANDOM_ERASE if random_erase else 0))


def make_input_queue(group_size, capacity=100000):
    """The FIFOQueue of (group_size,) paths, labels and control words, with its enqueue_many op and
    placeholders `image_paths`, `labels`, `control` (each [None, group_size])."""
    image_paths_placeholder = tf1.placeholder(tf.string, shape=(None, group_size), name='image_paths')
    labels_placeholder = tf1.placeholder(tf.int64, shape=(None, group_size), name='labels')
    control_placeholder = tf1.placeholder(tf.int32, shape=(None, group_size), name='control')
    queue = tf1.FIFOQueue(capacity=capacity, dtypes=[tf.string, tf.int64, tf.int32],
                          shapes=[(group_size,), (group_size,), (group_size,)])
    enqueue_op = queue.enqueue_many([image_paths_placeholder, labels_placeholder, control_placeholder],
                                    name='enqueue_op')
    return InputQueue(queue, enqueue_op, image_paths_placeholder, labels_placeholder, control_placeholder)


def enqueue(sess, input_queue, paths, labels, control):
    """Queue flat `paths` with their int64 `labels` in groups of the queue's size, every image with
    the same control word."""
    group = input_queue.queue.shapes[0].as_list()[0]
    paths = np.asarray(paths, dtype=object).reshape(-1, group)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1, group)
    sess.run(input_queue.enqueue_op, {input_queue.image_paths_placeholder: paths,
                                      input_queue.labels_placeholder: labels,
                                      input_queue.control_placeholder: np.full(labels.shape, control, np.int32)})


def get_control_flag(control, flag):
    """True where bit `flag` is set in the int32 `control` tensor (classic name)."""
    return tf.equal(tf.math.floormod(tf.math.floordiv(control, flag), 2), 1)


def random_rotate(image, max_degrees=MAX_ROTATION_DEGREES):
    """Rotate an HxWxC uint8 image by a uniform random angle about its centre (bilinear, black fill)."""
    angle = tf1.random_uniform([], -max_degrees, max_degrees) * (math.pi / 180.0)
    shape = tf.shape(image)
    height, width = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    cx, cy = (width - 1.0) / 2.0, (height - 1.0) / 2.0
    cos, sin = tf.cos(angle), tf.sin(angle)
    transform = tf.stack([cos, -sin, cx - cos * cx + sin * cy,
                          sin, cos, cy - sin * cx - cos * cy, 0.0, 0.0])[None, :]
    rotated = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None], transforms=transform, output_shape=shape[:2], fill_value=0.0,
        interpolation='BILINEAR', fill_mode='CONSTANT')
    return rotated[0]


def random_crop_or_pad(image, image_size):
    """A random image_size square crop, after zero-padding any side shorter than image_size."""
    shape = tf.shape(image)
    image = tf.image.resize_with_crop_or_pad(image, tf.maximum(shape[0], image_size),
                                             tf.maximum(shape[1], image_size))
    return tf1.random_crop(image, [image_size, image_size, 3])


def random_erase(image, probability=ERASE_PROBABILITY, area=ERASE_AREA, aspect=ERASE_ASPECT):
    """Random erasing of a float HxWxC image: with `probability`, a rectangle covering a uniform share
    `area` of the image, of log-uniform height/width ratio `aspect`, at a uniform position, is filled
    with uniform noise in [0, 255]. Hides part of the face so that the network learns from all of it
    (regularises training sets with few images per person)."""
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    size = tf1.random_uniform([], *area) * tf.cast(height * width, tf.float32)
    ratio = tf.exp(tf1.random_uniform([], math.log(aspect[0]), math.log(aspect[1])))
    erase_h = tf.clip_by_value(tf.cast(tf.round(tf.sqrt(size * ratio)), tf.int32), 1, height)
    erase_w = tf.clip_by_value(tf.cast(tf.round(tf.sqrt(size / ratio)), tf.int32), 1, width)
    top = tf1.random_uniform([], 0, height - erase_h + 1, dtype=tf.int32)
    left = tf1.random_uniform([], 0, width - erase_w + 1, dtype=tf.int32)
    rows = tf.range(height)[:, None, None]
    cols = tf.range(width)[None, :, None]
    inside = (rows >= top) & (rows < top + erase_h) & (cols >= left) & (cols < left + erase_w)
    inside &= tf1.random_uniform([]) < probability
    return tf.where(inside, tf1.random_uniform(tf.shape(image), 0.0, 255.0), image)


def preprocess(file_contents, control, image_size):
    """Decode one encoded image (JPEG, PNG, BMP, GIF) to RGB and preprocess it as `control` says:
    returns a float32 [image_size, image_size, 3] image."""
    image = tf.io.decode_image(file_contents, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    image = tf.cond(get_control_flag(control, RANDOM_ROTATE), lambda: random_rotate(image), lambda: tf.identity(image))
    image = tf.cond(get_control_flag(control, RANDOM_CROP), lambda: random_crop_or_pad(image, image_size),
                    lambda: tf.image.resize_with_crop_or_pad(image, image_size, image_size))
    image = tf.cond(get_control_flag(control, RANDOM_FLIP), lambda: tf.image.random_flip_left_right(image),
                    lambda: tf.identity(image))
    image = tf.cast(image, tf.float32)
    image = tf.cond(get_control_flag(control, RANDOM_ERASE), lambda: random_erase(image), lambda: tf.identity(image))
    image = tf.cond(get_control_flag(control, FIXED_STANDARDIZATION), lambda: (image - 127.5) / 128.0,
                    lambda: tf.image.per_image_standardization(image))
    image = tf.cond(get_control_flag(control, FLIP), lambda: tf.image.flip_left_right(image),
                    lambda: tf.identity(image))
    image.set_shape((image_size, image_size, 3))
    return image


def create_input_pipeline(input_queue, image_size, nrof_preprocess_threads, batch_size_placeholder,
                          capacity_images=None, read_file=tf.io.read_file):
    """(image_batch, label_batch) from the queue's groups, preprocessed by nrof_preprocess_threads
    readers and joined with batch_join (enqueue_many: a group is never split). `read_file` turns a
    queued path into encoded image bytes (e.g. a record-file reader)."""
    queue = input_queue.queue if isinstance(input_queue, InputQueue) else input_queue
    group_size = queue.shapes[0].as_list()[0]
    images_and_labels = []
    for _ in range(nrof_preprocess_threads):
        filenames, labels, control = queue.dequeue()
        images = [preprocess(read_file(filenames[i]), control[i], image_size) for i in range(group_size)]
        images_and_labels.append([tf.stack(images), labels])
    capacity = capacity_images or 4 * nrof_preprocess_threads * 100
    image_batch, label_batch = tf1.train.batch_join(
        images_and_labels, batch_size=batch_size_placeholder, shapes=[(image_size, image_size, 3), ()],
        enqueue_many=True, capacity=capacity, allow_smaller_final_batch=True)
    return image_batch, label_batch


def is_record_source(data_dir):
    """True when data_dir names a `.rec` file or a folder holding `train.rec`."""
    path = os.path.expanduser(data_dir)
    return path.endswith('.rec') or os.path.isfile(os.path.join(path, 'train.rec'))


def load_training_set(data_dir):
    """(ImageClass list, RecordDataset or None) of an image folder layout (several joined by ':')
    or of a record dataset; record images are named `record:<key>`. A `train.rec` that is a folder
    is an error, not a class of images."""
    if ':' not in data_dir and os.path.isdir(os.path.join(os.path.expanduser(data_dir), 'train.rec')):
        raise FaceNetError('%s: is a folder, not a record file' % os.path.join(data_dir, 'train.rec'))
    if ':' not in data_dir and is_record_source(data_dir):
        records = recordio.RecordDataset(data_dir)
        classes = [dataset_io.ImageClass(c.name, ['%s%d' % (RECORD_PREFIX, k) for k in c.image_paths])
                   for c in records.classes()]
        return classes, records
    skipped = []
    classes = dataset_io.get_dataset(data_dir, skipped=skipped)
    dataset_io.note_skipped(skipped, lambda line: sys.stderr.write(line + '\n'))
    return classes, None


def record_file_reader(records):
    """read_file(path) for the pipeline: `record:<key>` from `records` (None: no record file),
    anything else from disk."""
    if records is None:
        return tf.io.read_file

    def read_file(path):
        def from_record():
            key = tf.strings.to_number(tf.strings.substr(path, len(RECORD_PREFIX), -1), tf.int64)
            return records.encoded_tensor(key)
        is_record = tf.strings.regex_full_match(path, RECORD_PREFIX + '[0-9]+')
        return tf.cond(is_record, from_record, lambda: tf.io.read_file(path))
    return read_file


def encoded_items(images):
    """Encoded images (bytes) as queue entries that file_reader(encoded=True) passes on as they are."""
    return [ENCODED_PREFIX + bytes(data) for data in images]


def file_reader(records=None, encoded=False):
    """read_file(path) for the pipeline: record_file_reader(records) and, with `encoded`, entries of
    encoded_items() taken as the image bytes they hold (only then is the test in the graph, so the
    graph of a run without .bin targets is the classic one)."""
    read = record_file_reader(records)
    if not encoded:
        return read

    def read_file(path):
        is_encoded = tf.equal(tf.strings.substr(path, 0, len(ENCODED_PREFIX)), ENCODED_PREFIX)
        return tf.cond(is_encoded, lambda: tf.strings.substr(path, len(ENCODED_PREFIX), -1), lambda: read(path))
    return read_file
