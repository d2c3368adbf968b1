"""Box arithmetic of the MTCNN cascade, kept numerically identical to the classic detector.

Conventions of the classic code that matter for identical results:
- boxes are [x1, y1, x2, y2, score, ...] with inclusive pixel corners, so widths carry a +1;
- PNet maps are produced for width-first (transposed) images and read in that order;
- crops for RNet/ONet are made 1-based by `pad` and resized from float64 with area interpolation.
"""
import functools

import cv2
import numpy as np

PNET_STRIDE = 2
PNET_CELL = 12


def imresample(img, size):
    """Resize to (height, width) = size with OpenCV area interpolation (classic pyramid resampling)."""
    return cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_AREA)


def pyramid_scales(height, width, minsize, factor):
    """Scales of the image pyramid: from 12/minsize, times `factor`, while the short side is >= 12."""
    m = 12.0 / minsize
    minl = min(height, width) * m
    scales = []
    count = 0
    while minl >= 12:
        scales.append(m * np.power(factor, count))
        minl = minl * factor
        count += 1
    return scales


def scaled_size(height, width, scale):
    """Pyramid level size (height, width) for one scale: sides rounded up."""
    return int(np.ceil(height * scale)), int(np.ceil(width * scale))


@functools.lru_cache(maxsize=64)
def pyramid_levels(height, width, minsize, factor):
    """((scale, (level height, level width)), ...) of an image size: worked out once per size (a
    batch of same-size images, the frames of a video)."""
    return tuple((s, scaled_size(height, width, s)) for s in pyramid_scales(height, width, minsize, factor))


def generate_bounding_box(prob, reg, scale, threshold):
    """PNet candidates of one pyramid level: [N, 9] = box (4), score, regression offsets (4).

    `prob` is the face probability map (H', W') and `reg` the offsets (H', W', 4), both upright.
    Candidates are listed in the classic order (column-major over the upright map). As in the
    classic code, when exactly one cell passes, its offsets are read from the horizontally
    mirrored cell.
    """
    cols, rows = np.nonzero(prob.T >= threshold)
    if cols.size == 0:
        return np.empty((0, 9))
    score = prob[rows, cols]
    reg_cols = prob.shape[1] - 1 - cols if cols.size == 1 else cols
    offsets = reg[rows, reg_cols, :].astype(np.float64)
    cells = np.stack([cols, rows], axis=1).astype(np.float64)
    top_left = np.trunc((PNET_STRIDE * cells + 1) / scale)
    bottom_right = np.trunc((PNET_STRIDE * cells + PNET_CELL) / scale)
    return np.hstack([top_left, bottom_right, score[:, None].astype(np.float64), offsets])


NMS_MATRIX_LIMIT = 2000


def _overlaps(boxes, rows, cols, method):
    """Overlap of boxes[rows] (as the kept box) with boxes[cols], the classic formula, [len(rows), len(cols)]
    (the classic operations in the classic order, in place: one matrix-sized temporary)."""
    x1, y1, x2, y2 = (boxes[:, k] for k in range(4))
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    r, c = rows[:, None], cols[None, :]
    w = np.minimum(x2[r], x2[c])
    w -= np.maximum(x1[r], x1[c])
    w += 1
    np.maximum(w, 0.0, out=w)
    h = np.minimum(y2[r], y2[c])
    h -= np.maximum(y1[r], y1[c])
    h += 1
    np.maximum(h, 0.0, out=h)
    w *= h   # the intersection
    with np.errstate(divide='ignore', invalid='ignore'):
        if method == 'Min':
            np.minimum(area[r], area[c], out=h)
        else:
            np.add(area[r], area[c], out=h)
            h -= w
        w /= h
    return w


def nms(boxes, threshold, method):
    """Greedy non-maximum suppression; indices of the kept boxes, best first.

    'Union' compares intersection over union, 'Min' intersection over the smaller area; areas
    count inclusive pixels (+1). A box survives a kept box only if their overlap <= threshold
    (so an undefined overlap suppresses, as in the classic code). Ties in score keep the
    classic argsort order.
    """
    n = boxes.shape[0]
    if n <= 1:
        return np.zeros(n, dtype=np.int64)
    order = np.argsort(boxes[:, 4])[::-1]
    if n <= NMS_MATRIX_LIMIT:
        suppress = ~(_overlaps(boxes, order, order, method) <= threshold)
        alive = np.ones(n, dtype=bool)
        keep = []
        for i in range(n):
            if alive[i]:
                keep.append(i)
                alive[i + 1:] &= ~suppress[i, i + 1:]
        return order[keep]
    keep = []
    while order.size > 0:
        keep.append(order[0])
        rest = order[1:]
        order = rest[_overlaps(boxes, order[:1], rest, method)[0] <= threshold]
    return np.asarray(keep, dtype=np.int64)


def bbreg(boxes, reg):
    """Apply regression offsets (fractions of the inclusive width/height) to boxes, in place."""
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    boxes[:, 0:4] = boxes[:, 0:4] + reg[:, 0:4] * np.stack([w, h, w, h], axis=1)
    return boxes


def rerec(boxes):
    """Turn boxes into squares of side max(w, h) around the same centre, in place."""
    h = boxes[:, 3] - boxes[:, 1]
    w = boxes[:, 2] - boxes[:, 0]
    side = np.maximum(w, h)
    boxes[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    boxes[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    boxes[:, 2:4] = boxes[:, 0:2] + side[:, None]
    return boxes


def pad(boxes, w, h):
    """1-based source/destination ranges to copy each box out of a w x h image, zero-padding outside.

    Returns dy, edy, dx, edx (destination, in the box), y, ey, x, ex (source, in the image),
    tmpw, tmph (box size), all int32 as the classic code computes them.
    """
    tmpw = (boxes[:, 2] - boxes[:, 0] + 1).astype(np.int32)
    tmph = (boxes[:, 3] - boxes[:, 1] + 1).astype(np.int32)
    n = boxes.shape[0]
    dx = np.ones(n, dtype=np.int32)
    dy = np.ones(n, dtype=np.int32)
    edx = tmpw.copy()
    edy = tmph.copy()
    x = boxes[:, 0].astype(np.int32)
    y = boxes[:, 1].astype(np.int32)
    ex = boxes[:, 2].astype(np.int32)
    ey = boxes[:, 3].astype(np.int32)
    over = ex > w
    edx[over] = -ex[over] + w + tmpw[over]
    ex[over] = w
    over = ey > h
    edy[over] = -ey[over] + h + tmph[over]
    ey[over] = h
    under = x < 1
    dx[under] = 2 - x[under]
    x[under] = 1
    under = y < 1
    dy[under] = 2 - y[under]
    y[under] = 1
    return dy, edy, dx, edx, y, ey, x, ex, tmpw, tmph


def crop_boxes(img, boxes, size, out=None):
    """Crops of integer boxes, zero-padded outside the image, resized to size x size from float64.

    Returns [N, size, size, 3] upright float64 crops with raw 0..255 values, written into `out`
    when given (an [N, size, size, 3] float64 array), one OpenCV call per crop and no other copy.
    """
    height, width = img.shape[0], img.shape[1]
    dy, edy, dx, edx, y, ey, x, ex, tmpw, tmph = pad(boxes, width, height)
    inside = (dx == 1) & (dy == 1) & (edx == tmpw) & (edy == tmph)
    if out is None:
        out = np.empty((boxes.shape[0], size, size, 3), dtype=np.float64)
    for k in range(boxes.shape[0]):
        src = img[y[k] - 1:ey[k], x[k] - 1:ex[k], :]
        if inside[k]:
            tmp = src.astype(np.float64)
        else:
            tmp = np.zeros((tmph[k], tmpw[k], 3), dtype=np.float64)
            if src.size:
                tmp[dy[k] - 1:edy[k], dx[k] - 1:edx[k], :] = src
        cv2.resize(tmp, (size, size), dst=out[k], interpolation=cv2.INTER_AREA)
    return out


def valid_boxes(boxes):
    """Mask of boxes with a positive integer width and height (others cannot be cropped)."""
    return ((boxes[:, 2] - boxes[:, 0] + 1).astype(np.int32) >= 1) & \
        ((boxes[:, 3] - boxes[:, 1] + 1).astype(np.int32) >= 1)


def stack_normalized(arrays):
    """Classic MTCNN input scaling (x - 127.5) / 128 of equally shaped uint8 arrays (PNet inputs),
    stacked [N, ...] float32: each is cast once into the stack, which is scaled in place (float32 is
    exact here: integers minus 127.5, times a power of two)."""
    x = np.empty((len(arrays),) + arrays[0].shape, dtype=np.float32)
    for j, a in enumerate(arrays):
        x[j] = a
    x -= 127.5
    x *= 0.0078125
    return x


def network_input(crops):
    """Classic input scaling of upright float64 crops [N, H, W, 3] ((x - 127.5) / 128 in float64,
    then float32), width-first and contiguous [N, W, H, 3] as the networks take them: scaled in
    place, then one cast copy."""
    crops -= 127.5
    crops *= 0.0078125
    out = np.empty((crops.shape[0], crops.shape[2], crops.shape[1], crops.shape[3]), dtype=np.float32)
    out[...] = crops.transpose(0, 2, 1, 3)
    return out


def pnet_map_size(n):
    """Cells of the PNet output map along an input side of n pixels (n >= 11)."""
    return (n - 1) // 2 - 4


def pnet_tiles(n, tile):
    """Overlapping ranges along one side of n pixels on which PNet gives, cell for cell, the map it
    gives on the whole side: [(start, stop, first cell, cells)]. PNet is fully convolutional with
    stride 2 and a 12-pixel window, so a range starting at an even offset reproduces every cell
    whose window lies inside it; each range but the last keeps those cells, the last one runs to
    the end of the side (and so repeats the edge's padding). `tile` (even, >= 12) is a range's
    length; sides up to `tile` are one range."""
    if n <= tile:
        return [(0, n, 0, pnet_map_size(n))]
    cells = (tile - PNET_CELL) // PNET_STRIDE + 1
    ranges, start = [], 0
    while start + tile < n:
        ranges.append((start, start + tile, start // 2, cells))
        start += PNET_STRIDE * cells
    ranges.append((start, n, start // 2, pnet_map_size(n) - start // 2))
    return ranges
