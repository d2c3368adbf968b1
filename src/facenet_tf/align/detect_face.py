"""MTCNN face detection (PNet -> RNet -> ONet) on tensorflow.compat.v1 graphs.

Classic API: `create_mtcnn(sess, model_path)` returns the three network callables that
`detect_face` and `bulk_detect_face` drive, exactly as the classic module. `MTCNN` wraps the same
networks in one object whose `detect_batch` runs each stage for many images in few session calls
(all pyramid levels of a batch in one call per stage), which is where the speed comes from.

The networks are fed width-first (transposed) images scaled by (x - 127.5) / 128, as the classic
weights expect; every step of the cascade follows the classic arithmetic (see mtcnn_boxes).
"""
import os

import numpy as np

from facenet_tf.align import mtcnn_boxes as mb
from facenet_tf.align.mtcnn_weights import load_weights
from facenet_tf import tf_setup

tf = tf_setup.configure()  # TensorFlow set up for TF1 graphs (see facenet_tf.tf_setup)
tf1 = tf.compat.v1

DEFAULT_MINSIZE = 20
DEFAULT_THRESHOLD = (0.6, 0.7, 0.7)
DEFAULT_FACTOR = 0.709
PNET_SLOTS = 16      # pyramid levels that one PNet session call can take
STAGE_CHUNK = 2048   # crops per RNet/ONet session call (bounds memory on crowded images)
# PNet's working memory is about 150 bytes per input pixel: a session call takes at most
# PNET_CALL_PIXELS input pixels (or one level tile), and levels longer than PNET_TILE on a side are
# run in overlapping tiles (mtcnn_boxes.pnet_tiles) that give the same map as the whole level.
PNET_CALL_PIXELS = 1 << 21
PNET_TILE = 1024


# Networks

def _param(layers, layer, name):
    """The layer's weight variable; a reused scope (another PNet slot) gets it without building a
    second initializer constant."""
    if tf1.get_variable_scope().reuse:
        return tf1.get_variable(name)
    return tf1.get_variable(name, initializer=tf.constant(layers[layer][name]), trainable=False)


def _conv(x, layers, layer, stride=1):
    with tf1.variable_scope(layer):
        kernel = _param(layers, layer, 'weights')
        y = tf.nn.conv2d(x, kernel, strides=[1, stride, stride, 1], padding='VALID')
        return tf.nn.bias_add(y, _param(layers, layer, 'biases'))


def _prelu(x, layers, layer):
    """max(x, 0) + alpha * min(x, 0). When every alpha <= 1 this equals max(x, alpha * x) bit for bit
    (x > 0: alpha * x <= x; x < 0: alpha * x >= x), which takes two passes over the tensor, not four."""
    with tf1.variable_scope(layer):
        alpha = _param(layers, layer, 'alpha')
        if np.all(layers[layer]['alpha'] <= 1.0):
            return tf.maximum(x, alpha * x)
        return tf.maximum(x, 0.0) + alpha * tf.minimum(x, 0.0)


def _fc(x, layers, layer):
    with tf1.variable_scope(layer):
        if x.shape.ndims == 4:
            dim = int(np.prod(x.shape.as_list()[1:]))
            x = tf.reshape(x, [-1, dim])
        return tf1.nn.xw_plus_b(x, _param(layers, layer, 'weights'), _param(layers, layer, 'biases'),
                                name=layer)


def _pool(x, size, stride, padding):
    return tf.nn.max_pool2d(x, ksize=[1, size, size, 1], strides=[1, stride, stride, 1], padding=padding)


def _pnet(x, w, prelu=_prelu):
    x = prelu(_conv(x, w, 'conv1'), w, 'PReLU1')
    x = _pool(x, 2, 2, 'SAME')
    x = prelu(_conv(x, w, 'conv2'), w, 'PReLU2')
    x = prelu(_conv(x, w, 'conv3'), w, 'PReLU3')
    prob = tf.nn.softmax(_conv(x, w, 'conv4-1'), axis=3, name='prob1')
    return _conv(x, w, 'conv4-2'), prob


def _rnet(x, w, prelu=_prelu):
    x = _pool(prelu(_conv(x, w, 'conv1'), w, 'prelu1'), 3, 2, 'SAME')
    x = _pool(prelu(_conv(x, w, 'conv2'), w, 'prelu2'), 3, 2, 'VALID')
    x = prelu(_conv(x, w, 'conv3'), w, 'prelu3')
    x = prelu(_fc(x, w, 'conv4'), w, 'prelu4')
    prob = tf.nn.softmax(_fc(x, w, 'conv5-1'), axis=1, name='prob1')
    return _fc(x, w, 'conv5-2'), prob


def _onet(x, w, prelu=_prelu):
    x = _pool(prelu(_conv(x, w, 'conv1'), w, 'prelu1'), 3, 2, 'SAME')
    x = _pool(prelu(_conv(x, w, 'conv2'), w, 'prelu2'), 3, 2, 'VALID')
    x = _pool(prelu(_conv(x, w, 'conv3'), w, 'prelu3'), 2, 2, 'SAME')
    x = prelu(_conv(x, w, 'conv4'), w, 'prelu4')
    x = prelu(_fc(x, w, 'conv5'), w, 'prelu5')
    prob = tf.nn.softmax(_fc(x, w, 'conv6-1'), axis=1, name='prob1')
    return _fc(x, w, 'conv6-2'), _fc(x, w, 'conv6-3'), prob


class _Graph(object):
    """The three networks in one graph: PNet with several input slots sharing its weights."""

    def __init__(self, sess, weights, pnet_slots):
        self.sess = sess
        with sess.graph.as_default():
            before = {v.name for v in tf1.global_variables()}
            self.pnet_inputs, self.pnet_outputs = [], []
            with tf1.variable_scope(None, default_name='pnet') as scope:
                self._add_pnet_slot(weights)
            for _ in range(1, pnet_slots):
                with tf1.variable_scope(scope, reuse=True):
                    self._add_pnet_slot(weights)
            with tf1.variable_scope(None, default_name='rnet'):
                self.rnet_input = tf1.placeholder(tf.float32, (None, 24, 24, 3), 'input')
                self.rnet_outputs = _rnet(self.rnet_input, weights['rnet'])
            with tf1.variable_scope(None, default_name='onet'):
                self.onet_input = tf1.placeholder(tf.float32, (None, 48, 48, 3), 'input')
                self.onet_outputs = _onet(self.onet_input, weights['onet'])
            variables = [v for v in tf1.global_variables() if v.name not in before]
            sess.run(tf1.variables_initializer(variables))

    def _add_pnet_slot(self, weights):
        x = tf1.placeholder(tf.float32, (None, None, None, 3), 'input')
        self.pnet_inputs.append(x)
        self.pnet_outputs.append(_pnet(x, weights['pnet']))

    def pnet(self, batches):
        """PNet outputs (reg, prob) for a list of width-first batches, len(slots) levels per call."""
        results = []
        slots = len(self.pnet_inputs)
        for start in range(0, len(batches), slots):
            part = batches[start:start + slots]
            feed = {self.pnet_inputs[k]: b for k, b in enumerate(part)}
            fetches = [self.pnet_outputs[k] for k in range(len(part))]
            results.extend(self.sess.run(fetches, feed_dict=feed))
        return results

    def _chunked(self, inputs, outputs, x):
        if x.shape[0] <= STAGE_CHUNK:
            return self.sess.run(outputs, feed_dict={inputs: x})
        parts = [self.sess.run(outputs, feed_dict={inputs: x[i:i + STAGE_CHUNK]})
                 for i in range(0, x.shape[0], STAGE_CHUNK)]
        return tuple(np.concatenate(p, axis=0) for p in zip(*parts))

    def rnet(self, x):
        return self._chunked(self.rnet_input, self.rnet_outputs, x)

    def onet(self, x):
        return self._chunked(self.onet_input, self.onet_outputs, x)


def cpu_count():
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else (os.cpu_count() or 1)


def session_config(threads=None, gpu_memory_fraction=None, allow_growth=False):
    """Detector session settings: `threads` (default: all cores) inside an op, two ops at a time; on
    a GPU, the share of its memory this process may take (`--gpu_memory_fraction`) or allocation as
    needed (`--allow_growth`)."""
    return tf_setup.session_config(intra_op_threads=threads or cpu_count(), inter_op_threads=2,
                                   gpu_memory_fraction=gpu_memory_fraction, allow_growth=allow_growth)


def create_mtcnn(sess, model_path=None):
    """Build PNet, RNet, ONet in `sess` (classic API); model_path None means the packaged weights.

    Returns three callables taking width-first float batches, as the classic ones:
    pnet(x) -> (reg, prob), rnet(x) -> (reg, prob), onet(x) -> (reg, landmarks, prob).
    """
    graph = _Graph(sess, load_weights(model_path), pnet_slots=1)
    return (lambda x: tuple(graph.pnet([x])[0]), graph.rnet, graph.onet)


# The cascade, for many images at once

def _empty():
    return np.empty((0, 5)), np.empty((10, 0))


class Pyramid(object):
    """An image with its PNet inputs: one width-first uint8 array per scale (normalised when fed,
    a quarter of the memory of float32 levels). Building it (resizing) is independent of the
    networks, so callers may do it ahead, in other threads, while the networks work on other images."""

    def __init__(self, img, minsize=DEFAULT_MINSIZE, factor=DEFAULT_FACTOR):
        self.img = _as_rgb_uint8(img)
        levels = mb.pyramid_levels(self.img.shape[0], self.img.shape[1], minsize, factor)
        self.scales = [s for s, _ in levels]
        self.levels = [mb.imresample(self.img, size).transpose(1, 0, 2) for _, size in levels]

    @property
    def pixels(self):
        """Pixels of the image and of its levels (what it holds in memory, in RGB pixels)."""
        return self.img.shape[0] * self.img.shape[1] + sum(lv.shape[0] * lv.shape[1] for lv in self.levels)


def _pnet_work(pyramids, tile):
    """{input shape: [(image, level, (row range), (column range), first cell (row, column))]}: every
    level, or its tiles when a side is longer than `tile`, grouped by shape in order of appearance."""
    groups = {}
    for idx, pyr in enumerate(pyramids):
        for k, level in enumerate(pyr.levels):
            for r0, r1, o0, _ in mb.pnet_tiles(level.shape[0], tile):
                for c0, c1, o1, _ in mb.pnet_tiles(level.shape[1], tile):
                    groups.setdefault((r1 - r0, c1 - c0), []).append((idx, k, (r0, r1), (c0, c1), (o0, o1)))
    return groups


def _pnet_batches(pyramids, tile, call_pixels):
    """Lists of (work items, their normalised inputs stacked) with at most `call_pixels` input
    pixels (at least one item) each, built one by one as they are run."""
    for shape, members in _pnet_work(pyramids, tile).items():
        per = max(1, call_pixels // (shape[0] * shape[1]))
        for start in range(0, len(members), per):
            part = members[start:start + per]
            yield part, mb.stack_normalized([pyramids[i].levels[k][r0:r1, c0:c1]
                                             for i, k, (r0, r1), (c0, c1), _ in part])


def _pnet_calls(pyramids, tile, call_pixels):
    """The batches of _pnet_batches packed into session calls of at most `call_pixels` pixels and
    PNET_SLOTS batches."""
    call, pixels = [], 0
    for part, x in _pnet_batches(pyramids, tile, call_pixels):
        n = x.shape[0] * x.shape[1] * x.shape[2]
        if call and (pixels + n > call_pixels or len(call) == PNET_SLOTS):
            yield call
            call, pixels = [], 0
        call.append((part, x))
        pixels += n
    if call:
        yield call


def _level_boxes(prob, reg, scale, threshold):
    """PNet candidates of one level after its NMS (classic), from the upright maps."""
    boxes = mb.generate_bounding_box(prob, reg, scale, threshold)
    pick = mb.nms(boxes, 0.5, 'Union')
    return boxes[pick] if pick.size else None


def _stage_pnet(pyramids, threshold, run_pnet, tile=PNET_TILE, call_pixels=PNET_CALL_PIXELS):
    """Candidate boxes per image after PNet: fixed-point squares [N, 5] (classic stage one).

    A level's maps are assembled from its tiles and turned into boxes as soon as they are complete,
    so what is held at once is one call's inputs and the maps of unfinished levels."""
    maps = {}      # (image, level) -> [prob map, reg map, tiles missing]
    for idx, pyr in enumerate(pyramids):
        for k, level in enumerate(pyr.levels):
            rows = mb.pnet_map_size(level.shape[0])
            cols = mb.pnet_map_size(level.shape[1])
            tiles = len(mb.pnet_tiles(level.shape[0], tile)) * len(mb.pnet_tiles(level.shape[1], tile))
            maps[(idx, k)] = [None, None, tiles, (rows, cols)]
    found = {}
    for call in _pnet_calls(pyramids, tile, call_pixels):
        outputs = run_pnet([x for _, x in call])
        for (part, _), (reg, prob) in zip(call, outputs):
            for j, (idx, k, _, _, (o0, o1)) in enumerate(part):
                entry = maps[(idx, k)]
                if entry[2] == 1 and entry[0] is None:  # a whole level
                    p, r = prob[j, :, :, 1], reg[j]
                else:
                    if entry[0] is None:
                        entry[0] = np.empty(entry[3], np.float32)
                        entry[1] = np.empty(entry[3] + (4,), np.float32)
                    n0, n1 = prob.shape[1], prob.shape[2]
                    entry[0][o0:o0 + n0, o1:o1 + n1] = prob[j, :, :, 1]
                    entry[1][o0:o0 + n0, o1:o1 + n1] = reg[j]
                    entry[2] -= 1
                    if entry[2]:
                        continue
                    p, r = entry[0], entry[1]
                del maps[(idx, k)]
                found[(idx, k)] = _level_boxes(p.T, r.transpose(1, 0, 2), pyramids[idx].scales[k], threshold)
    result = []
    for idx, pyr in enumerate(pyramids):
        parts = [found[(idx, k)] for k in range(len(pyr.scales)) if found[(idx, k)] is not None]
        if not parts:
            result.append(np.empty((0, 5)))
            continue
        boxes = np.concatenate(parts, axis=0)
        boxes = boxes[mb.nms(boxes, 0.7, 'Union')]
        regw = boxes[:, 2] - boxes[:, 0]
        regh = boxes[:, 3] - boxes[:, 1]
        boxes = np.stack([boxes[:, 0] + boxes[:, 5] * regw, boxes[:, 1] + boxes[:, 6] * regh,
                          boxes[:, 2] + boxes[:, 7] * regw, boxes[:, 3] + boxes[:, 8] * regh,
                          boxes[:, 4]], axis=1)
        boxes = mb.rerec(boxes)
        boxes[:, 0:4] = np.trunc(boxes[:, 0:4])
        result.append(boxes)
    return result


def _run_on_crops(images, boxes_per_image, size, run):
    """Outputs of `run` on the width-first normalised size x size crops of every image's boxes, in
    order, with each image's slice; the crops are made STAGE_CHUNK at a time (a crowded photo's
    candidates never all in memory). (None, bounds) when there are no boxes."""
    bounds, start = [], 0
    for boxes in boxes_per_image:
        bounds.append((start, start + boxes.shape[0]))
        start += boxes.shape[0]
    if start == 0:
        return None, bounds
    parts = []
    crops = np.empty((min(start, STAGE_CHUNK), size, size, 3), dtype=np.float64)
    for c in range(0, start, STAGE_CHUNK):
        stop = min(start, c + STAGE_CHUNK)
        for img, boxes, (a, b) in zip(images, boxes_per_image, bounds):
            lo, hi = max(a, c), min(b, stop)   # this image's crops in this chunk
            if lo < hi:
                mb.crop_boxes(img, boxes[lo - a:hi - a], size, out=crops[lo - c:hi - c])
        parts.append(run(mb.network_input(crops[:stop - c])))
    if len(parts) == 1:
        return parts[0], bounds
    return tuple(np.concatenate(p, axis=0) for p in zip(*parts)), bounds


def _stage_rnet(images, candidates, threshold, run_rnet):
    """RNet refinement of the PNet squares (classic stage two)."""
    candidates = [c[mb.valid_boxes(c)] for c in candidates]
    out, bounds = _run_on_crops(images, candidates, 24, run_rnet)
    if out is None:
        return candidates
    reg, prob = out
    result = []
    for boxes, (a, b) in zip(candidates, bounds):
        score = prob[a:b, 1]
        keep = np.nonzero(score > threshold)[0]
        out = np.hstack([boxes[keep, 0:4], score[keep, None]])
        if out.shape[0]:
            pick = mb.nms(out, 0.7, 'Union')
            out = mb.rerec(mb.bbreg(out[pick], reg[a:b][keep][pick]))
        result.append(out)
    return result


def _stage_onet(images, candidates, threshold, run_onet):
    """ONet output: final boxes [N, 5] and landmarks [10, N] per image (classic stage three)."""
    candidates = [np.trunc(c).astype(np.int32) for c in candidates]
    candidates = [c[mb.valid_boxes(c)] for c in candidates]
    out, bounds = _run_on_crops(images, candidates, 48, run_onet)
    if out is None:
        return [_empty() for _ in images]
    reg, marks, prob = out
    result = []
    for boxes, (a, b) in zip(candidates, bounds):
        score = prob[a:b, 1]
        keep = np.nonzero(score > threshold)[0]
        if keep.size == 0:
            result.append(_empty())
            continue
        out = np.hstack([boxes[keep, 0:4], score[keep, None]])
        points = marks[a:b][keep].T.astype(np.float64)
        w = out[:, 2] - out[:, 0] + 1
        h = out[:, 3] - out[:, 1] + 1
        points[0:5, :] = w * points[0:5, :] + out[:, 0] - 1
        points[5:10, :] = h * points[5:10, :] + out[:, 1] - 1
        out = mb.bbreg(out, reg[a:b][keep])
        pick = mb.nms(out, 0.7, 'Min')
        result.append((out[pick], points[:, pick]))
    return result


def _cascade(pyramids, threshold, run_pnet, run_rnet, run_onet):
    """Boxes [N, 5] and landmarks [10, N] for every image (same results as one image at a time)."""
    images = [p.img for p in pyramids]
    candidates = _stage_pnet(pyramids, threshold[0], run_pnet)
    candidates = _stage_rnet(images, candidates, threshold[1], run_rnet)
    return _stage_onet(images, candidates, threshold[2], run_onet)


def _as_rgb_uint8(img):
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return img[:, :, 0:3]


def detect_face(img, minsize, pnet, rnet, onet, threshold, factor):
    """Faces in one RGB image: (boxes [N, 5] = x1, y1, x2, y2, score; points [10, N] = x1..x5, y1..y5)."""
    run_pnet = (lambda batches: [pnet(b) for b in batches])
    return _cascade([Pyramid(img, minsize, factor)], threshold, run_pnet, rnet, onet)[0]


def bulk_detect_face(images, detection_window_size_ratio, pnet, rnet, onet, threshold, factor):
    """Classic batch API: minsize = ratio * short side (at least 12); None for images without faces."""
    minsizes = [max(int(detection_window_size_ratio * min(img.shape[0], img.shape[1])), 12)
                for img in images]
    run_pnet = (lambda batches: [pnet(b) for b in batches])
    pyramids = [Pyramid(img, minsize, factor) for img, minsize in zip(images, minsizes)]
    results = _cascade(pyramids, threshold, run_pnet, rnet, onet)
    return [r if r[0].shape[0] else None for r in results]


class MTCNN(object):
    """One face detector: networks built once, `detect` for an image, `detect_batch` for many.

    With sess None the detector owns a graph and a CPU session; otherwise it builds its networks
    in the given session's graph. model_path None means the packaged weights, else a folder with
    det1.npy, det2.npy, det3.npy. `threads`, `gpu_memory_fraction` and `allow_growth` set up an
    owned session (see session_config).
    """

    def __init__(self, sess=None, model_path=None, minsize=DEFAULT_MINSIZE, threshold=DEFAULT_THRESHOLD,
                 factor=DEFAULT_FACTOR, threads=None, gpu_memory_fraction=None, allow_growth=False):
        weights = load_weights(model_path)
        self.own_session = sess is None
        self.session_config = None  # the ConfigProto of an owned session
        if sess is None:
            self.session_config = session_config(threads, gpu_memory_fraction, allow_growth)
            sess = tf1.Session(graph=tf.Graph(), config=self.session_config)
        self.sess = sess
        self.minsize = minsize
        self.threshold = tuple(threshold)
        self.factor = factor
        self._graph = _Graph(sess, weights, PNET_SLOTS)

    def detect(self, img):
        """(boxes [N, 5], points [10, N]) for one HxWx3 RGB uint8 image."""
        return self.detect_batch([img])[0]

    def pyramid(self, img):
        """The PNet inputs of one image (a Pyramid), for detect_batch; thread-safe."""
        return Pyramid(img, self.minsize, self.factor)

    def detect_batch(self, images):
        """detect() for a list of images (or of their pyramids), each network stage run once for all."""
        if not len(images):
            return []
        pyramids = [img if isinstance(img, Pyramid) else self.pyramid(img) for img in images]
        return _cascade(pyramids, self.threshold, *self.stages())

    def stages(self):
        """The (pnet, rnet, onet) callables the cascade runs (align.mtcnn_runtimes: exported ones)."""
        return self._graph.pnet, self._graph.rnet, self._graph.onet

    def close(self):
        if self.own_session:
            self.sess.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
