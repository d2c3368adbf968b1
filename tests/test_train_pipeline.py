"""The shared FIFOQueue input pipeline: preprocessing against numpy, control words, group integrity."""
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from facenet_tf import images as image_lib
from facenet_tf.training import input_pipeline as ip
from facenet_tf import training

tf1 = tf.compat.v1
SIZE = 64


@pytest.fixture(scope='module')
def pictures(data_dir, tmp_path_factory):
    """PNG faces of several sizes: ORL grayscale 92x112, an LFW colour crop 80x70, a tiny 20x24 one."""
    root = tmp_path_factory.mktemp('pipe')
    paths = []
    for i in range(1, 10):
        paths.append(os.path.join(data_dir, 'orl_faces', 's%d' % i, '1.png'))
    lfw = np.asarray(Image.open(os.path.join(data_dir, 'lfw_deepfunneled', 'Aaron_Eckhart',
                                             'Aaron_Eckhart_0001.jpg')).convert('RGB'))
    Image.fromarray(lfw[80:160, 90:160]).save(str(root / 'colour.png'))
    Image.fromarray(lfw[100:120, 100:124]).save(str(root / 'tiny.png'))
    return paths + [str(root / 'colour.png'), str(root / 'tiny.png'), str(root / 'colour.png')]


def _run(paths, control, group=3, threads=2, batch=6):
    with tf.Graph().as_default():
        queue = ip.make_input_queue(group)
        batch_size = tf1.placeholder(tf.int32, name='batch_size')
        image_batch, label_batch = ip.create_input_pipeline(queue, SIZE, threads, batch_size)
        with tf1.Session() as sess:
            coord, threads_ = training.start_queue_runners(sess)
            n = len(paths)
            sess.run(queue.enqueue_op, {queue.image_paths_placeholder: np.array(paths, object).reshape(-1, group),
                                        queue.labels_placeholder: np.arange(n).reshape(-1, group),
                                        queue.control_placeholder: np.full((n // group, group), control)})
            images, labels = [], []
            done = 0
            while done < n:
                img, lab = sess.run([image_batch, label_batch], {batch_size: min(batch, n - done)})
                images.append(img)
                labels.append(lab)
                done += len(lab)
            training.stop_queue_runners(sess, coord, threads_, [queue.queue.close(cancel_pending_enqueues=True)])
    labels = np.concatenate(labels)
    out = np.zeros((len(paths), SIZE, SIZE, 3), np.float32)
    out[labels] = np.concatenate(images)
    return out, labels


def _central(path):
    img = image_lib.read_rgb(path).astype(np.float32)
    h, w = img.shape[:2]
    if h < SIZE or w < SIZE:
        canvas = np.zeros((max(h, SIZE), max(w, SIZE), 3), np.float32)
        top, left = (canvas.shape[0] - h) // 2, (canvas.shape[1] - w) // 2
        canvas[top:top + h, left:left + w] = img
        img, h, w = canvas, canvas.shape[0], canvas.shape[1]
    top, left = (h - SIZE) // 2, (w - SIZE) // 2
    return img[top:top + SIZE, left:left + SIZE]


def test_central_crop_pad_and_standardization_match_numpy(pictures):
    out, labels = _run(pictures, 0)
    for i, path in enumerate(pictures):
        np.testing.assert_allclose(out[i], image_lib.prewhiten(_central(path)), atol=1e-4)
    # groups of three stay together and in order inside every batch
    groups = labels.reshape(-1, 3)
    assert np.all(groups[:, 1] == groups[:, 0] + 1) and np.all(groups[:, 2] == groups[:, 0] + 2)
    out, _ = _run(pictures, ip.FIXED_STANDARDIZATION | ip.FLIP)
    for i, path in enumerate(pictures):
        np.testing.assert_allclose(out[i], image_lib.fixed_standardize(_central(path))[:, ::-1], atol=1e-6)


def test_random_augmentation(pictures):
    control = ip.control_flags(random_crop=True, random_flip=True, random_rotate=True, fixed_standardization=True)
    assert control == ip.RANDOM_CROP | ip.RANDOM_FLIP | ip.RANDOM_ROTATE | ip.FIXED_STANDARDIZATION
    reps = pictures[:1] * 9
    out, _ = _run(reps, control)
    plain = image_lib.fixed_standardize(_central(reps[0]))
    distinct = {hash(o.tobytes()) for o in out}
    assert len(distinct) == len(reps)
    assert not any(np.allclose(o, plain, atol=1e-3) for o in out)
    assert all(o.shape == (SIZE, SIZE, 3) and o.min() >= -1.0 and o.max() <= 1.0 for o in out)
    # a random crop of a 92x112 face stays a face: correlation with some crop window of the original
    rotated, _ = _run(reps[:3], ip.RANDOM_ROTATE | ip.FIXED_STANDARDIZATION)
    for o in rotated:
        corr = np.corrcoef(o.ravel(), plain.ravel())[0, 1]
        assert 0.5 < corr < 0.99999


def test_random_erase(pictures):
    control = ip.control_flags(fixed_standardization=True, random_erase=True)
    assert control == ip.FIXED_STANDARDIZATION | ip.RANDOM_ERASE
    reps = pictures[:1] * 40
    out, _ = _run(reps, control, group=1, batch=8)
    plain = image_lib.fixed_standardize(_central(reps[0]))
    erased = 0
    for o in out:
        changed = np.any(np.abs(o - plain) > 1e-6, axis=2)
        if not changed.any():
            continue
        erased += 1
        rows, cols = np.where(changed)
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert changed.sum() > 0.95 * box                     # one rectangle of noise
        assert 0.01 * SIZE * SIZE <= box <= 0.45 * SIZE * SIZE
        assert -1.0 <= o.min() and o.max() <= 1.0
    assert 8 <= erased <= 32                                  # about half of the images


def test_single_image_groups(pictures):
    out, labels = _run(pictures[:5], 0, group=1, threads=2, batch=2)
    assert sorted(labels) == list(range(5))
    np.testing.assert_allclose(out[4], image_lib.prewhiten(_central(pictures[4])), atol=1e-4)
