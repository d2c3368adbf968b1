"""RecordIO reading and writing: byte-exact against a file written by MXNet itself, the split of
payloads holding the magic word, face datasets with and without the header record, and errors."""
import os
import struct

import numpy as np
import pytest
import tensorflow as tf

from facenet_tf import record_writer, recordio
from facenet_tf.errors import FaceNetError

MAGIC = struct.pack('<I', 0xced7230a)
# Written by MXNet 1.9.1 (mx.recordio.MXIndexedRecordIO, pack) with the four records of
# _mxnet_records(): magic words at aligned and unaligned places, float labels and label vectors.
MXNET_REC_HEX = (
    '0a23d7ce180000200000000000000000000000000000000000000000000000000a23d7ce000000400a23d7ce0400'
    '0040616263640a23d7ce020000607a7a00000a23d7ce24000000030000000000000001000000000000000500000000'
    '0000000000803f0000e040000010410a23d7ce1f00000000000000000000400200000000000000000000000000000078'
    '797a0a23d7ce000a23d7ce3000002003000000000000000300000000000000050000000000000000004040000'
    '0e040000010413132333431323334313233340a23d7ce00000060')
MXNET_IDX = '0\t0\n1\t64\n2\t108\n3\t148\n'


def _mxnet_records():
    payloads = [MAGIC + MAGIC + b'abcd' + MAGIC + b'zz', b'', b'xyz' + MAGIC, b'1234' * 3 + MAGIC]
    headers = [recordio.IRHeader(0, [float(i), 7.0, 9.0], i, 5) if i % 2
               else recordio.IRHeader(0, float(i), i, 0) for i in range(4)]
    return headers, payloads


def test_writer_matches_mxnet_bytes(tmp_path):
    headers, payloads = _mxnet_records()
    rec, idx = str(tmp_path / 'a.rec'), str(tmp_path / 'a.idx')
    with record_writer.RecordWriter(rec, idx) as writer:
        for i, (h, p) in enumerate(zip(headers, payloads)):
            writer.write(i, record_writer.pack(h, p))
    assert open(rec, 'rb').read() == bytes.fromhex(MXNET_REC_HEX)
    assert open(idx).read() == MXNET_IDX


@pytest.mark.parametrize('with_idx', [True, False])
def test_reader_reads_mxnet_file(tmp_path, with_idx):
    rec, idx = tmp_path / 'm.rec', tmp_path / 'm.idx'
    rec.write_bytes(bytes.fromhex(MXNET_REC_HEX))
    idx.write_text(MXNET_IDX)
    headers, payloads = _mxnet_records()
    with recordio.RecordReader(str(rec), str(idx) if with_idx else None) as reader:
        assert reader.keys == [0, 1, 2, 3]
        assert [reader.index[k] for k in range(4)] == [0, 64, 108, 148]
        for k in range(4):
            header, payload = recordio.unpack(reader.read(k))
            assert payload == payloads[k]
            assert (header.flag, header.id, header.id2) == (headers[k].flag if k % 2 == 0 else 3,
                                                            headers[k].id, headers[k].id2)
            np.testing.assert_array_equal(header.label, headers[k].label)
            fast = reader.read_header(k)
            np.testing.assert_array_equal(fast.label, header.label)
            assert fast.flag == header.flag


def test_dataset_without_header_record(tmp_path):
    """Record 0 with flag 0 is an image: every record is an image, labels from the headers."""
    rec, idx = tmp_path / 'm.rec', tmp_path / 'm.idx'
    rec.write_bytes(bytes.fromhex(MXNET_REC_HEX))
    idx.write_text(MXNET_IDX)
    ds = recordio.RecordDataset(str(rec))
    assert ds.header is None and ds.property is None
    np.testing.assert_array_equal(ds.keys, [0, 1, 2, 3])
    np.testing.assert_array_equal(ds.labels, [0, 1, 2, 3])
    assert ds.num_classes == 4
    assert ds.read_bytes(3) == b'1234' * 3 + MAGIC
    assert [c.image_paths for c in ds.classes()] == [[0], [1], [2], [3]]


def test_dataset_of_label_vector_images_has_no_header(tmp_path):
    """Images whose headers carry label vectors (flag 2) from record 0 on: no header record."""
    rec, idx = str(tmp_path / 'train.rec'), str(tmp_path / 'train.idx')
    with record_writer.RecordWriter(rec, idx) as writer:
        for key, label in enumerate([1, 0, 1]):
            header = recordio.IRHeader(0, [float(label), 0.5], key, 0)
            writer.write(key, record_writer.pack(header, b'img%d' % key))
    ds = recordio.RecordDataset(str(tmp_path))
    assert ds.header is None and ds.num_classes == 2
    np.testing.assert_array_equal(ds.labels, [1, 0, 1])
    assert [ds.read_bytes(k) for k in ds.keys] == [b'img0', b'img1', b'img2']
    with pytest.raises(recordio.RecordFormatError, match='holds no record 7'):
        ds.read_bytes(7)


@pytest.mark.parametrize('payload', [
    b'', b'a', MAGIC, MAGIC * 3, b'abcd' + MAGIC, MAGIC + b'12', b'ab' + MAGIC + b'cd',
    b'12345678' + MAGIC + b'x' * 9 + MAGIC[:3]])
def test_payload_round_trip(tmp_path, payload):
    rec, idx = str(tmp_path / 'p.rec'), str(tmp_path / 'p.idx')
    with record_writer.RecordWriter(rec, idx) as writer:
        writer.write(5, payload)
        writer.write(9, b'next')
    data = open(rec, 'rb').read()
    assert len(data) % 4 == 0
    aligned_magics = sum(payload[i:i + 4] == MAGIC for i in range(0, len(payload) - 3, 4))
    assert data.count(MAGIC) >= 2 + aligned_magics      # one frame per part
    with recordio.RecordReader(rec, idx) as reader:
        assert reader.keys == [5, 9]
        assert reader.read(5) == payload and reader.read(9) == b'next'
    with recordio.RecordReader(rec) as reader:
        assert reader.read(0) == payload and reader.read(1) == b'next'


def test_face_dataset_header_and_ranges(tmp_path):
    rec, idx = str(tmp_path / 'train.rec'), str(tmp_path / 'train.idx')
    classes = [[b'a0', b'a1'], [b'b0', None, b'b2', b'b3'], [b'c0']]
    counts = record_writer.write_face_dataset(rec, idx, classes, lambda item: item)
    assert counts == [2, 3, 1]
    record_writer.write_property(str(tmp_path / 'property'), 3, 112, 96)
    ds = recordio.RecordDataset(str(tmp_path))
    assert ds.header == (7, 10)
    assert ds.ranges == [(1, 3), (3, 6), (6, 7)]
    assert ds.image_size == (112, 96)
    np.testing.assert_array_equal(ds.keys, np.arange(1, 7))
    np.testing.assert_array_equal(ds.labels, [0, 0, 1, 1, 1, 2])
    assert [ds.read_bytes(k) for k in ds.keys] == [b'a0', b'a1', b'b0', b'b2', b'b3', b'c0']
    header, _ = ds.read_record(4)
    assert (header.flag, header.label, header.id) == (0, 1.0, 4)
    assert [(c.name, c.image_paths) for c in ds.classes()] == [('0', [1, 2]), ('1', [3, 4, 5]), ('2', [6])]


def test_encoded_tensor_in_tf_data(tmp_path):
    rec, idx = str(tmp_path / 'train.rec'), str(tmp_path / 'train.idx')
    record_writer.write_face_dataset(rec, idx, [[b'x' * 5, b'yy'], [b'z']], lambda item: item)
    ds = recordio.RecordDataset(str(tmp_path))
    with tf.compat.v1.Graph().as_default():
        data = tf.data.Dataset.from_tensor_slices(ds.keys).map(ds.encoded_tensor)
        item = tf.compat.v1.data.make_one_shot_iterator(data).get_next()
        with tf.compat.v1.Session() as sess:
            assert [sess.run(item) for _ in range(3)] == [b'x' * 5, b'yy', b'z']


def test_errors_are_one_line(tmp_path):
    with pytest.raises(FaceNetError, match='record file not found'):
        recordio.RecordDataset(str(tmp_path))
    bad = tmp_path / 'train.rec'
    bad.write_bytes(b'\x89PNG\r\n\x1a\n' + b'\0' * 40)
    with pytest.raises(recordio.RecordFormatError, match='no record starts at byte 0'):
        recordio.RecordDataset(str(tmp_path))
    rec, idx = str(tmp_path / 'train.rec'), str(tmp_path / 'train.idx')
    record_writer.write_face_dataset(rec, idx, [[b'a'], [b'b']], lambda item: item)
    with open(idx, 'a') as f:
        f.write('99\t7\n')
    reader = recordio.RecordReader(rec, idx)
    with pytest.raises(recordio.RecordFormatError, match='stale .idx'):
        reader.read(99)
    with open(idx, 'a') as f:
        f.write('oops\n')
    with pytest.raises(recordio.RecordFormatError, match='line 7'):
        recordio.read_index(idx)
    (tmp_path / 'property').write_text('2,112\n')
    with pytest.raises(recordio.RecordFormatError, match='num_classes,height,width'):
        recordio.read_property(str(tmp_path / 'property'))
    with open(rec, 'r+b') as f:
        f.truncate(os.path.getsize(rec) - 6)
    with pytest.raises(recordio.RecordFormatError, match='truncated'):
        recordio.RecordReader(rec).read(3)
