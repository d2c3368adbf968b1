"""Indexed RecordIO files (`train.rec` + `train.idx`) as the insightface face datasets use them,
read without MXNet (writing them: facenet_tf.record_writer; the image checks before decoding a stored
image: facenet_tf.encoded_images).

File format. Each record in the `.rec` file is framed as: the 4-byte little-endian magic word
0xced7230a, a 4-byte length word (upper 3 bits: continuation flag, lower 29 bits: byte length),
the payload, then zero padding to a multiple of 4 bytes. A payload holding the magic word at a
4-byte aligned position is written in parts with the magic word cut out (flag 1 = first part,
2 = middle part, 3 = last part, 0 = whole record); a reader joins the parts, putting the magic
word back between them. The `.idx` file is text, one `key<TAB>byte offset` line per record.

Image records. A payload starts with the 24-byte header `<IfQQ` (flag, label, id, id2). When
flag > 0, `flag` float32 values (the label vector) follow the header and `label` is unused; the
encoded image (JPEG/PNG bytes) follows.

Face datasets. Record 0 is a header record, with no image, whose label vector is [N + 1, M] when
its flag is > 0: records 1..N are images and records N+1..M-1 hold, for each identity in label
order, the range [first, end) of its image record keys as their label vector. Without such a header (flag 0 in
record 0, or an image in it) every record is an image. A `property` text file beside them holds
`num_classes,height,width`.
"""
import collections
import os
import struct

import numpy as np

from facenet_tf.errors import FaceNetError
from facenet_tf.dataset import ImageClass
from facenet_tf.encoded_images import MAX_IMAGE_SIDE, decode_image, image_size
from facenet_tf.images import ImageReadError
from facenet_tf.tf_setup import configure

MAGIC = 0xced7230a
_MAGIC_BYTES = struct.pack('<I', MAGIC)
FRAME = struct.Struct('<II')
IR_STRUCT = struct.Struct('<IfQQ')
IR_SIZE = IR_STRUCT.size
MAX_LENGTH = (1 << 29) - 1
MAX_INDEX_LINE = 256            # characters in one `.idx` line (two integers)
MAX_PROPERTY_BYTES = 256        # a `property` file is one short line


class RecordFormatError(FaceNetError):
    """A `.rec` / `.idx` / `property` file is not in the expected format (one-line reason)."""


IRHeader = collections.namedtuple('IRHeader', ['flag', 'label', 'id', 'id2'])


def unpack(record):
    """(IRHeader, remaining bytes) of a record payload; the label is a float, or a float32 array
    when the header's flag is > 0."""
    if len(record) < IR_SIZE:
        raise RecordFormatError('record of %d bytes is shorter than its %d-byte header'
                                % (len(record), IR_SIZE))
    flag, label, id1, id2 = IR_STRUCT.unpack_from(record, 0)
    rest = memoryview(record)[IR_SIZE:]
    if flag > 0:
        if len(rest) < 4 * flag:
            raise RecordFormatError('record header announces %d labels but holds %d bytes'
                                    % (flag, len(rest)))
        label = np.frombuffer(rest[:4 * flag], dtype='<f4').astype(np.float32)
        rest = rest[4 * flag:]
    return IRHeader(flag, label, id1, id2), bytes(rest)


def read_index(idx_path):
    """{key: offset} of a `.idx` file, in file order: distinct keys, offsets >= 0 (each is checked
    against the `.rec` file when its record is read)."""
    index = {}
    lineno = 0
    try:
        with open(idx_path, 'rb') as f:
            while True:
                line = f.readline(MAX_INDEX_LINE + 1)
                if not line:
                    break
                lineno += 1
                if len(line) > MAX_INDEX_LINE:
                    raise RecordFormatError('%s line %d: longer than %d characters (not a .idx file)'
                                            % (idx_path, lineno, MAX_INDEX_LINE))
                line = line.decode('ascii')
                fields = line.split()
                if not fields:
                    continue
                if len(fields) != 2:
                    raise RecordFormatError('%s line %d: expected "key<TAB>offset", found "%s"'
                                            % (idx_path, lineno, line.strip()))
                if not all(x.isascii() and x.isdigit() for x in fields):
                    raise RecordFormatError('%s line %d: key and offset must be integers >= 0, found "%s"'
                                            % (idx_path, lineno, line.strip()))
                key, offset = int(fields[0]), int(fields[1])
                if max(key, offset) >= 1 << 63:
                    raise RecordFormatError('%s line %d: key or offset beyond 2^63' % (idx_path, lineno))
                if key in index:
                    raise RecordFormatError('%s line %d: key %d is listed twice' % (idx_path, lineno, key))
                index[key] = offset
    except UnicodeDecodeError:
        raise RecordFormatError('%s line %d: not a text .idx file' % (idx_path, lineno))
    except OSError as e:
        raise RecordFormatError('cannot read %s: %s' % (idx_path, e.strerror or e))
    return index


class RecordReader(object):
    """Random access to the records of an indexed RecordIO pair. Reads with positioned reads
    (no shared file position), so several threads may read at once."""

    def __init__(self, rec_path, idx_path=None):
        if not os.path.isfile(rec_path):
            raise FaceNetError('record file not found: %s' % rec_path)
        self.rec_path = rec_path
        self._fd = os.open(rec_path, os.O_RDONLY | getattr(os, 'O_BINARY', 0))
        self._size = os.fstat(self._fd).st_size
        if idx_path is not None:
            if not os.path.isfile(idx_path):
                raise FaceNetError('index file not found: %s' % idx_path)
            self.index = read_index(idx_path)
        else:
            self.index = self._scan()
        self.keys = list(self.index.keys())

    def _read_exact(self, n, offset):
        data = os.pread(self._fd, n, offset)
        if len(data) != n:
            raise RecordFormatError('%s: truncated record at byte %d' % (self.rec_path, offset))
        return data

    def _read_frame_word(self, offset):
        """(magic, length word) of the frame at `offset`, checked to be a frame start in the file."""
        if offset % 4:  # frames are padded to 4 bytes: this offset points inside a record
            raise RecordFormatError('%s: no record starts at byte %d, not a multiple of 4 (a stale .idx, '
                                    'or a damaged one)' % (self.rec_path, offset))
        if offset + FRAME.size > self._size:
            raise RecordFormatError('%s: byte %d is past the end of the file (%d bytes; a stale .idx, '
                                    'or a damaged one)' % (self.rec_path, offset, self._size))
        return FRAME.unpack(self._read_exact(FRAME.size, offset))

    def _read_frame(self, offset):
        """(cflag, payload bytes, offset of the next frame) of the frame at `offset`."""
        magic, word = self._read_frame_word(offset)
        if magic != MAGIC:
            raise RecordFormatError('%s: no record starts at byte %d (not a RecordIO file, or a '
                                    'stale .idx)' % (self.rec_path, offset))
        cflag, length = word >> 29, word & MAX_LENGTH
        if offset + 8 + length > self._size:  # checked before reading: no allocation for a declared size
            raise RecordFormatError('%s: truncated record at byte %d: it declares %d bytes, past the end '
                                    'of the file (%d bytes)' % (self.rec_path, offset, length, self._size))
        data = self._read_exact(length, offset + 8) if length else b''
        return cflag, data, offset + 8 + length + (-length % 4)

    def read_at(self, offset):
        """(payload, offset of the next record) of the record starting at byte `offset`."""
        cflag, data, nxt = self._read_frame(offset)
        if cflag == 0:
            return data, nxt
        if cflag != 1:
            raise RecordFormatError('%s: record at byte %d starts with a continuation part'
                                    % (self.rec_path, offset))
        parts = [data]
        while cflag != 3:
            cflag, data, nxt = self._read_frame(nxt)
            if cflag not in (2, 3):
                raise RecordFormatError('%s: broken multi-part record at byte %d' % (self.rec_path, offset))
            parts.append(data)
        return _MAGIC_BYTES.join(parts), nxt

    def _scan(self):
        """Index of a `.rec` without `.idx`: keys 0, 1, ... in file order."""
        index, offset = {}, 0
        while offset < self._size:
            index[len(index)] = offset
            _, offset = self.read_at(offset)
        return index

    def check_offsets(self, keys, what='record'):
        """One-line error unless every record of `keys` (int64 array) is in the index at a 4-byte
        aligned offset inside the file; vectorised, so an open checks all its image records without
        reading them."""
        known = np.fromiter(self.index.keys(), np.int64, len(self.index))
        offsets = np.fromiter(self.index.values(), np.int64, len(self.index))
        order = np.argsort(known)
        where = np.minimum(np.searchsorted(known[order], keys), max(len(known) - 1, 0))
        missing = np.flatnonzero(known[order][where] != keys) if len(known) else np.arange(len(keys))
        if missing.size:
            raise RecordFormatError('%s holds no record %d (%s)' % (self.rec_path, keys[missing[0]], what))
        offsets = offsets[order][where]
        bad = np.flatnonzero((offsets % 4 != 0) | (offsets + FRAME.size > self._size))
        if bad.size:
            try:
                self._read_frame_word(int(offsets[bad[0]]))
            except RecordFormatError as e:
                raise RecordFormatError('%s (%s %d)' % (e, what, keys[bad[0]]))

    def offset(self, key):
        """Byte offset of the record with `key`, or a one-line error."""
        try:
            return self.index[key]
        except KeyError:
            raise RecordFormatError('%s holds no record %s' % (self.rec_path, key))

    def read(self, key):
        """Payload of the record with `key`."""
        offset = self.offset(key)
        try:
            return self.read_at(offset)[0]
        except RecordFormatError as e:
            raise RecordFormatError('%s (record %s)' % (e, key))

    def read_header(self, key):
        """IRHeader of the record with `key`, reading only its first bytes when it is in one part."""
        offset = self.offset(key)
        try:
            magic, word = self._read_frame_word(offset)
        except RecordFormatError as e:
            raise RecordFormatError('%s (record %s)' % (e, key))
        length = word & MAX_LENGTH
        if magic == MAGIC and word >> 29 == 0 and length >= IR_SIZE:
            head = self._read_exact(min(length, 64), offset + 8)
            flag = IR_STRUCT.unpack_from(head, 0)[0]
            if IR_SIZE + 4 * flag <= len(head):
                return unpack(head)[0]
        return unpack(self.read(key))[0]

    def __len__(self):
        return len(self.index)

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def read_property(path):
    """(num_classes, height, width) of a `property` file."""
    try:
        with open(path, 'rb') as f:
            text = f.read(MAX_PROPERTY_BYTES + 1)
    except OSError as e:
        raise RecordFormatError('cannot read %s: %s' % (path, e.strerror or e))
    fields = text.decode('ascii', 'replace').strip().split(',')
    if (len(text) > MAX_PROPERTY_BYTES or len(fields) != 3
            or not all(x.strip().isascii() and x.strip().isdigit() for x in fields)):
        raise RecordFormatError('%s: expected "num_classes,height,width"' % path)
    num_classes, height, width = (int(x) for x in fields)
    if not (1 <= height <= MAX_IMAGE_SIDE and 1 <= width <= MAX_IMAGE_SIDE):
        raise RecordFormatError('%s: image size %dx%d is not between 1 and %d pixels per side'
                                % (path, height, width, MAX_IMAGE_SIDE))
    return num_classes, height, width


def label_of(header):
    """Integer class label of an image record's header (first value of a label vector)."""
    label = header.label
    return int(label[0]) if np.ndim(label) else int(label)


def _whole(value, low, high, what):
    """`value` (a float from a record header) as an int in [low, high], or a one-line reason."""
    value = float(value)
    if not (np.isfinite(value) and value == int(value) and low <= value <= high):
        raise RecordFormatError('%s is %r, not a whole number from %d to %d' % (what, value, low, high))
    return int(value)


class RecordDataset(object):
    """An insightface face dataset: `train.rec`, `train.idx` and optionally `property` in a folder.

    `keys` (int64) are the image records' keys and `labels` (int64) their class labels, aligned;
    `read_bytes(key)` returns the stored encoded image, `read_image(key)` it decoded as HxWx3 uint8
    RGB. `header` is (N + 1, M) of record 0 when the file has the header record, else None.
    """

    def __init__(self, path, prefix='train'):
        path = os.path.expanduser(path)
        if os.path.isdir(path):
            rec_path = os.path.join(path, prefix + '.rec')
        elif path.endswith('.rec'):
            rec_path = path
        else:
            raise FaceNetError('record dataset not found: %s (give a folder holding %s.rec and %s.idx, '
                            'or the .rec file)' % (path, prefix, prefix))
        if not os.path.isfile(rec_path):
            raise FaceNetError('record file not found: %s' % rec_path)
        folder = os.path.dirname(rec_path)
        self.rec_path = rec_path
        idx_path = rec_path[:-4] + '.idx'
        self.reader = RecordReader(rec_path, idx_path if os.path.isfile(idx_path) else None)
        property_path = os.path.join(folder, 'property')
        self.property = read_property(property_path) if os.path.isfile(property_path) else None
        self.header = None
        self.ranges = None
        self._load_labels()

    def _load_labels(self):
        """Keys and labels of the image records; every number a header declares is checked against
        the records the file really holds before anything is allocated for it."""
        count = len(self.reader)
        if not count:
            raise FaceNetError('%s holds no records' % self.rec_path)
        head, image = unpack(self.reader.read(self.reader.keys[0]))
        if head.flag >= 2 and not image:
            self._load_ranges(head, count)
        else:
            self.keys = np.asarray(self.reader.keys, dtype=np.int64)
            self.labels = np.array(
                [_whole(np.ravel(self.reader.read_header(int(k)).label)[0], 0, count - 1,
                        '%s: the label of record %d' % (self.rec_path, k)) for k in self.keys],
                dtype=np.int64)
            self.num_classes = int(self.labels.max()) + 1 if self.labels.size else 0
        if self.property is not None and self.property[0] != self.num_classes:
            raise RecordFormatError('%s: property says %d classes, the records hold %d'
                                    % (self.rec_path, self.property[0], self.num_classes))

    def _load_ranges(self, head, count):
        """The insightface layout: header [N + 1, M], identity records N+1..M-1 holding disjoint
        [first, end) ranges of image keys inside 1..N."""
        what = '%s: record 0 (header)' % self.rec_path
        end_images = _whole(head.label[0], 1, count, what + ' end of the images')
        end_ids = _whole(head.label[1], end_images, end_images + count, what + ' end of the identities')
        self.header = (end_images, end_ids)
        ranges = []
        for key in range(end_images, end_ids):
            r = self.reader.read_header(key)
            if r.flag < 2:
                raise RecordFormatError('%s: identity record %d has no [first, end) range'
                                        % (self.rec_path, key))
            what = '%s: identity record %d' % (self.rec_path, key)
            first = _whole(r.label[0], 1, end_images, what + ' first image')
            end = _whole(r.label[1], 1, end_images, what + ' end')
            if end < first:
                raise RecordFormatError('%s: identity record %d has the inverted range [%d, %d)'
                                        % (self.rec_path, key, first, end))
            ranges.append((first, end))
        bounds = np.array(ranges, dtype=np.int64).reshape(-1, 2)
        sizes = bounds[:, 1] - bounds[:, 0]
        order = np.flatnonzero(sizes)  # empty ranges overlap nothing
        order = order[np.argsort(bounds[order, 0], kind='stable')]
        overlap = np.flatnonzero(bounds[order[1:], 0] < bounds[order[:-1], 1])
        if overlap.size:
            a, b = order[overlap[0]], order[overlap[0] + 1]
            raise RecordFormatError('%s: identity records %d and %d have overlapping ranges [%d, %d) and '
                                    '[%d, %d)' % (self.rec_path, end_images + a, end_images + b,
                                                  *ranges[a], *ranges[b]))
        self.ranges = ranges
        self.labels = np.repeat(np.arange(len(ranges), dtype=np.int64), sizes)
        self.keys = (np.repeat(bounds[:, 0] - np.cumsum(sizes) + sizes, sizes)
                     + np.arange(int(sizes.sum()), dtype=np.int64))
        self.reader.check_offsets(self.keys, 'image record of an identity range')
        self.num_classes = len(ranges)

    @property
    def image_size(self):
        """(height, width) from the property file, or None."""
        return None if self.property is None else self.property[1:]

    def __len__(self):
        return int(self.keys.size)

    def read_record(self, key):
        """(IRHeader, encoded image bytes) of image record `key`."""
        return unpack(self.reader.read(int(key)))

    def read_bytes(self, key):
        """The encoded image (JPEG/PNG bytes) stored in record `key`."""
        return self.read_record(key)[1]

    def read_image(self, key):
        """Image record `key` decoded as an HxWx3 uint8 RGB array."""
        try:
            return decode_image(self.read_bytes(key))
        except ImageReadError as e:
            raise FaceNetError('%s record %d: %s' % (self.rec_path, int(key), e))

    def read_checked_bytes(self, key):
        """The encoded image of record `key` unless its header declares more than MAX_IMAGE_PIXELS
        (then a one-line error: a bomb stops the reader rather than being decoded; bytes that are
        no image are passed on, and the decoder refuses them)."""
        data = self.read_bytes(key)
        try:
            image_size(data, strict=False)
        except ImageReadError as e:
            raise FaceNetError('%s record %d: %s' % (self.rec_path, int(key), e))
        return data

    def classes(self):
        """ImageClass list, one per label 0..num_classes-1, named by the label, whose
        `image_paths` are the record keys (ints) of that class's images."""
        order = np.argsort(self.labels, kind='stable')
        bounds = np.searchsorted(self.labels[order], np.arange(self.num_classes + 1))
        return [ImageClass(str(c), self.keys[order[bounds[c]:bounds[c + 1]]].tolist())
                for c in range(self.num_classes)]

    def encoded_tensor(self, key):
        """tf.string tensor of the encoded image in record `key` (an int64 tensor), for tf.data maps."""
        tf = configure()
        out = tf.numpy_function(lambda k: self.read_checked_bytes(int(k)), [key], tf.string, stateful=False)
        out.set_shape([])
        return out

    def close(self):
        self.reader.close()
