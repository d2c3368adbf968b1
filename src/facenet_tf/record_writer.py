"""Writing indexed RecordIO files (`train.rec` + `train.idx`) and the insightface face dataset
layout in them; the format and the reading side are facenet_tf.recordio."""
import numpy as np

from facenet_tf.recordio import FRAME, IR_SIZE, IR_STRUCT, MAGIC, MAX_LENGTH, IRHeader, RecordFormatError


def pack(header, payload=b''):
    """Record payload of an IRHeader and the bytes that follow it. A label that is a sequence or
    array is stored as a float32 label vector (flag = its length); a number is stored in `label`."""
    label = header.label
    if np.ndim(label) == 0:
        return IR_STRUCT.pack(0, float(label), int(header.id), int(header.id2)) + bytes(payload)
    vector = np.asarray(label, dtype='<f4').ravel()
    return (IR_STRUCT.pack(vector.size, 0.0, int(header.id), int(header.id2)) + vector.tobytes()
            + bytes(payload))


def _frame(payload):
    """The bytes of one record as written to the `.rec` file (split around aligned magic words)."""
    data = bytes(payload)
    length = len(data)
    if length > MAX_LENGTH:
        raise RecordFormatError('record of %d bytes exceeds the format limit of %d' % (length, MAX_LENGTH))
    words = np.frombuffer(data, dtype='<u4', count=length // 4)
    cuts = 4 * np.flatnonzero(words == MAGIC)
    out = []
    start = 0
    for cut in cuts:
        out.append(FRAME.pack(MAGIC, ((1 if start == 0 else 2) << 29) | (int(cut) - start)))
        out.append(data[start:cut])
        start = int(cut) + 4
    out.append(FRAME.pack(MAGIC, ((3 if len(cuts) else 0) << 29) | (length - start)))
    out.append(data[start:])
    out.append(b'\0' * (-(length - start) % 4))
    return b''.join(out)


class RecordWriter(object):
    """Writes an indexed RecordIO pair: records to `rec_path`, `key<TAB>offset` lines to `idx_path`."""

    def __init__(self, rec_path, idx_path):
        self._rec = open(rec_path, 'wb')
        self._idx = open(idx_path, 'w')

    def write(self, key, payload):
        """Append one record under integer `key`."""
        self._idx.write('%d\t%d\n' % (key, self._rec.tell()))
        self._rec.write(_frame(payload))

    def close(self):
        self._rec.close()
        self._idx.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def write_property(path, num_classes, height, width):
    with open(path, 'w') as f:
        f.write('%d,%d,%d\n' % (num_classes, height, width))


def write_face_dataset(rec_path, idx_path, classes, read_payload, progress=None):
    """Write the insightface layout: record 0 the header [N + 1, M], records 1..N the images of
    `classes` (a list of lists of items, one list per label) with payload `read_payload(item)`
    (encoded bytes, or None to leave the item out), then one [first, end) record per identity.
    Returns the number of images written per class."""
    counts = []
    with RecordWriter(rec_path, idx_path) as writer:
        writer.write(0, pack(IRHeader(0, [0.0, 0.0], 0, 0)))
        key = 1
        ranges = []
        for label, items in enumerate(classes):
            first = key
            for item in items:
                payload = read_payload(item)
                if payload is not None:
                    writer.write(key, pack(IRHeader(0, float(label), key, 0), payload))
                    key += 1
                if progress is not None:
                    progress.update(1)
            ranges.append((first, key))
            counts.append(key - first)
        end_images = key
        for label, (first, end) in enumerate(ranges):
            writer.write(key, pack(IRHeader(0, [float(first), float(end)], label, 0)))
            key += 1
    _patch_header(rec_path, end_images, key)
    return counts


def _patch_header(rec_path, end_images, end_ids):
    """Write record 0's [N + 1, M] label vector in place: it sits right after the 8-byte frame
    word pair and the 24-byte header, and its size does not change."""
    with open(rec_path, 'r+b') as f:
        f.seek(FRAME.size + IR_SIZE)
        f.write(np.array([end_images, end_ids], dtype='<f4').tobytes())
