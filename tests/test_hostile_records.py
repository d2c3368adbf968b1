"""Hostile record files (.rec/.idx/property), verification sets (.bin) and pairs files, and the tools
that read or write them (make_record.py, generate_pairs.py, validate_on_lfw.py): every crafted file
is built here; each case checks one line naming the file, the exit code, nothing written, the inputs
unchanged, nothing run, and bounded memory where a file declares a size."""
import io
import os
import pickle
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
from PIL import Image

from facenet_tf import generate_pairs
import lfw
from facenet_tf import make_record
from facenet_tf import validate as validate_on_lfw
from facenet_tf import record_writer, recordio, verification_sets
from facenet_tf.errors import FaceNetError
from hostile import assert_not_in_tree, assert_one_line_error, run_main, secret_file, tree_hashes

MIB = 1 << 20


def _png(value=0, size=4):
    out = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(out, 'PNG')
    return out.getvalue()


def _chunk(kind, data):
    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))


def _bomb_png(width, height):
    """A few hundred bytes of PNG whose header declares width x height grey pixels."""
    ihdr = struct.pack('>IIBBBBB', width, height, 8, 0, 0, 0, 0)
    return (b'\x89PNG\r\n\x1a\n' + _chunk(b'IHDR', ihdr)
            + _chunk(b'IDAT', zlib.compress(b'\0' * (width + 1) * 4)) + _chunk(b'IEND', b''))


class _Peak:
    """Peak Python-tracked allocation (numpy arrays and bytes included) inside the block, in MiB."""

    def __enter__(self):
        tracemalloc.start()
        return self

    def __exit__(self, *exc):
        self.mib = tracemalloc.get_traced_memory()[1] / MIB
        tracemalloc.stop()


def _one_line(error, *fragments):
    text = str(error.value)
    assert '\n' not in text, text
    for fragment in fragments:
        assert str(fragment) in text, (fragment, text)


# ---------------------------------------------------------------- pairs files


@pytest.fixture
def lfw_tree(tmp_path):
    """(dataset folder with Ann/Bob images, the folder beside it with a secret image, secret bytes)."""
    data = tmp_path / 'lfw'
    for name in ('Ann', 'Bob'):
        (data / name).mkdir(parents=True)
        for i in (1, 2):
            (data / name / ('%s_%04d.png' % (name, i))).write_bytes(_png(40 * i))
    outside = tmp_path / 'outside'
    outside.mkdir()
    secret_path, secret = secret_file(tmp_path)
    for i in (1, 2):  # a valid image with the secret after its end: packed as is if ever reached
        (outside / ('outside_%04d.png' % i)).write_bytes(_png(9) + secret)
    return str(data), str(outside), secret


PAIRS_CASES = [
    ('superscript', '1\nAnn\t\u00b2\t1\n', 'line 2', 'image number'),
    ('parent', '1\nAnn\t1\t2\n..\t1\t2\n', 'line 3', 'not a folder inside'),
    ('dotdot_path', '1\n../outside\t1\t2\n', 'line 2', 'not a folder inside'),
    ('absolute', '1\n{outside}\t1\t2\n', 'line 2', 'not a folder inside'),
    ('different_parent', '1\nAnn\t1\t../outside\t1\n', 'line 2', 'not a folder inside'),
    ('zero', '1\nAnn\t0\t1\n', 'line 2', 'image number "0"'),
    ('negative', '1\nAnn\t-1\t2\n', 'line 2', 'image number "-1"'),
    ('two_fields', '1\nAnn\t1\n', 'line 2', 'found 2 fields'),
    ('five_fields', '1\nAnn\t1\tBob\t1\tx\n', 'line 2', 'found 5 fields'),
    ('huge_number', '1\nAnn\t1\t%s\n' % ('9' * 5000), 'line 2', 'longer than'),
    ('huge_line', '1\n' + 'A' * 100000 + '\n', 'line 2', 'longer than'),
    ('header', '\u00b2\nAnn\t1\t2\n', 'first line', 'pair counts'),
    ('binary', None, 'line 1', 'binary file'),
]


@pytest.mark.parametrize('case, text, where, what', PAIRS_CASES, ids=[c[0] for c in PAIRS_CASES])
def test_pairs_file_entries_are_checked(tmp_path, lfw_tree, case, text, where, what):
    """make_record.py --pairs and validate_on_lfw.py read pairs through lfw.read_pairs: a bad line is
    one error naming the file and line; nothing outside the dataset folder is read or packed."""
    data, outside, secret = lfw_tree
    pairs = tmp_path / 'pairs.txt'
    if text is None:
        pairs.write_bytes(b'\x80\x00\xff' + os.urandom(64))
    else:
        pairs.write_text(text.format(outside=outside), encoding='utf-8')
    before = tree_hashes(tmp_path)
    out = tmp_path / 'out' / 'lfw.bin'
    result = run_main(make_record, [data, out, '--pairs', pairs])
    assert_one_line_error(result, str(pairs), where, what, code=2)
    assert not out.exists() and not out.parent.exists()
    assert tree_hashes(tmp_path) == before
    assert_not_in_tree(secret, tmp_path / 'lfw')
    with pytest.raises(FaceNetError) as error:
        lfw.read_pairs(str(pairs))
    _one_line(error, str(pairs), where)


def test_listed_pairs_with_outside_names_are_skipped(lfw_tree, capsys):
    """Pairs given as lists (not read from a file) that name a folder outside are skipped, counted
    like missing images."""
    data, outside, _ = lfw_tree
    paths, issame = lfw.get_paths(data, [['Ann', '1', '2'], ['../outside', '1', '2'], [outside, '1', '2']])
    assert len(paths) == 2 and issame == [True]
    assert all(p.startswith(data) for p in paths)
    assert 'Skipped 2 image pairs' in capsys.readouterr().err


# ---------------------------------------------------------------- record files


def _record_dataset(folder, classes=((10, 20), (30,))):
    """A small valid insightface dataset (header record, images, identity records) in `folder`."""
    folder.mkdir(exist_ok=True)
    rec, idx = str(folder / 'train.rec'), str(folder / 'train.idx')
    record_writer.write_face_dataset(rec, idx, [[_png(v) for v in c] for c in classes], lambda item: item)
    record_writer.write_property(str(folder / 'property'), len(classes), 4, 4)
    return rec, idx


def _rewrite_record(rec, idx, key, payload):
    """Rewrite the dataset with record `key`'s payload replaced (every other record kept)."""
    reader = recordio.RecordReader(rec, idx)
    payloads = [payload if k == key else reader.read(k) for k in reader.keys]
    reader.close()
    with record_writer.RecordWriter(rec, idx) as writer:
        for k, p in enumerate(payloads):
            writer.write(k, p)


def _header(label, flag_vector=True):
    return record_writer.pack(recordio.IRHeader(0, label if flag_vector else float(label), 0, 0))


def _open_checked(folder):
    """RecordDataset(folder) must fail with one line; returns the error, with the peak memory."""
    with _Peak() as peak:
        with pytest.raises(FaceNetError) as error:
            recordio.RecordDataset(str(folder))
    assert peak.mib < 8, peak.mib
    return error


def _idx_lines(idx):
    with open(idx) as f:
        return f.read().splitlines()


def _tamper_idx(idx, line_no, text):
    lines = _idx_lines(idx)
    lines[line_no] = text
    with open(idx, 'w') as f:
        f.write('\n'.join(lines) + '\n')


IDX_CASES = [
    ('negative_offset', lambda idx, rec: _tamper_idx(idx, 1, '1\t-8'), 'train.idx line 2', 'integers >= 0'),
    ('superscript', lambda idx, rec: _tamper_idx(idx, 1, '1\t\u00b2'), 'train.idx line 2', 'not a text'),
    ('past_end', lambda idx, rec: _tamper_idx(idx, 1, '1\t%d' % (os.path.getsize(rec) + 64)),
     'train.rec', 'past the end'),
    ('mid_record_unaligned', lambda idx, rec: _tamper_idx(idx, 1, '1\t%d' % (int(_idx_lines(idx)[1].split()[1]) + 9)),
     'train.rec', 'not a multiple of 4'),
    ('duplicate_key', lambda idx, rec: _tamper_idx(idx, 2, _idx_lines(idx)[1]), 'train.idx line 3', 'listed twice'),
    ('huge_key', lambda idx, rec: _tamper_idx(idx, 1, '%d\t0' % (1 << 70)), 'train.idx line 2', 'beyond 2^63'),
    ('huge_line', lambda idx, rec: _tamper_idx(idx, 1, '1' * 1000000), 'train.idx line 2', 'longer than'),
    ('binary', lambda idx, rec: open(idx, 'wb').write(b'0\t0\n\xff\xfe\x00\x01' * 8), 'train.idx line 2', 'not a text'),
]


@pytest.mark.parametrize('case, tamper, names, what', IDX_CASES, ids=[c[0] for c in IDX_CASES])
def test_index_entries_are_checked(tmp_path, case, tamper, names, what):
    rec, idx = _record_dataset(tmp_path / 'ds')
    tamper(idx, rec)
    error = _open_checked(tmp_path / 'ds')
    _one_line(error, names, what)


def test_index_pointing_inside_a_record(tmp_path):
    """An aligned offset inside another record's payload: no frame starts there, one line when the
    record is read (the open checks offsets without reading every record)."""
    rec, idx = _record_dataset(tmp_path / 'ds')
    offset = int(_idx_lines(idx)[1].split()[1]) + 12
    _tamper_idx(idx, 1, '1\t%d' % offset)
    ds = recordio.RecordDataset(str(tmp_path / 'ds'))
    with pytest.raises(FaceNetError) as error:
        ds.read_bytes(1)
    _one_line(error, 'train.rec', 'no record starts at byte %d' % offset, 'record 1')


def test_frame_declaring_a_huge_length_is_not_allocated(tmp_path):
    """A frame word declaring 512 MiB in a file of a few hundred bytes: refused before reading."""
    rec, idx = _record_dataset(tmp_path / 'ds')
    offset = int(_idx_lines(idx)[2].split()[1])
    with open(rec, 'r+b') as f:
        f.seek(offset + 4)
        f.write(struct.pack('<I', recordio.MAX_LENGTH))
    ds = recordio.RecordDataset(str(tmp_path / 'ds'))
    with _Peak() as peak:
        with pytest.raises(FaceNetError) as error:
            ds.read_bytes(2)
    assert peak.mib < 8, peak.mib
    _one_line(error, 'train.rec', 'truncated record at byte %d' % offset, 'record 2')
    os.remove(idx)  # the same without .idx: the scan stops at the same frame
    _one_line(_open_checked(tmp_path / 'ds'), 'train.rec', 'declares %d bytes' % recordio.MAX_LENGTH)


def test_ir_header_announcing_huge_label_vector(tmp_path):
    rec, idx = _record_dataset(tmp_path / 'ds')
    _rewrite_record(rec, idx, 4, struct.pack('<IfQQ', 1 << 31, 0.0, 0, 0) + b'\0' * 8)
    _one_line(_open_checked(tmp_path / 'ds'), 'announces %d labels' % (1 << 31))


HEADER_CASES = [
    ('nan', 0, [float('nan'), 6.0], 'record 0 (header) end of the images is nan'),
    ('inf', 0, [4.0, float('inf')], 'end of the identities is inf'),
    ('huge_identity_count', 0, [4.0, 1e9], 'end of the identities is 1000000000.0'),
    ('fraction', 0, [3.5, 6.0], 'is 3.5, not a whole number'),
    ('inverted_range', 4, [3.0, 1.0], 'identity record 4 has the inverted range [3, 1)'),
    ('range_past_images', 4, [1.0, 1e9], 'identity record 4 end is 1000000000.0'),
    ('range_nan', 5, [float('nan'), 4.0], 'identity record 5 first image is nan'),
    ('overlapping', 5, [2.0, 4.0], 'identity records 4 and 5 have overlapping ranges [1, 3) and [2, 4)'),
]


@pytest.mark.parametrize('case, key, label, what', HEADER_CASES, ids=[c[0] for c in HEADER_CASES])
def test_header_and_identity_records_are_checked(tmp_path, case, key, label, what):
    """Record 0 is [4, 6] (images 1..3), identity records 4 and 5 hold [1, 3) and [3, 4)."""
    rec, idx = _record_dataset(tmp_path / 'ds')
    _rewrite_record(rec, idx, key, _header(label))
    _one_line(_open_checked(tmp_path / 'ds'), 'train.rec', what)


@pytest.mark.parametrize('label, what', [(float('nan'), 'is nan'), (1e9, 'is 1000000000.0'), (-1.0, 'is -1.0')])
def test_labels_of_records_without_header_are_checked(tmp_path, label, what):
    """Without a header record every record is an image with its label: a label the records cannot
    hold (NaN, negative, beyond the record count) is refused before classes are built."""
    folder = tmp_path / 'plain'
    folder.mkdir()
    with record_writer.RecordWriter(str(folder / 'train.rec'), str(folder / 'train.idx')) as writer:
        for key, value in enumerate([0.0, label, 1.0]):
            writer.write(key, record_writer.pack(recordio.IRHeader(0, value, key, 0), _png(key)))
    _one_line(_open_checked(folder), 'train.rec', 'the label of record 1', what)


@pytest.mark.parametrize('content, what', [
    (b'2,112,112' + b' ' * 10000, 'num_classes,height,width'),
    (b'2,-4,4', 'num_classes,height,width'),
    (b'2,100000,100000', 'not between 1 and'),
    (b'\x00\xff\xfe', 'num_classes,height,width'),
])
def test_property_file_is_checked(tmp_path, content, what):
    _record_dataset(tmp_path / 'ds')
    (tmp_path / 'ds' / 'property').write_bytes(content)
    _one_line(_open_checked(tmp_path / 'ds'), 'property', what)


def test_bomb_image_in_a_record_is_not_decoded(tmp_path):
    """A record whose PNG declares 8192x4096 (or 50000x50000) pixels: refused from its header, in
    read_image and in the training reader, without allocating for its pixels."""
    rec, idx = _record_dataset(tmp_path / 'ds')
    for key, (w, h) in ((2, (8192, 4096)), (3, (50000, 50000))):
        _rewrite_record(rec, idx, key, record_writer.pack(recordio.IRHeader(0, 0.0 if key < 3 else 1.0, key, 0),
                                                     _bomb_png(w, h)))
    ds = recordio.RecordDataset(str(tmp_path / 'ds'))
    assert ds.read_image(1).shape == (4, 4, 3)
    with _Peak() as peak:
        for key in (2, 3):
            with pytest.raises(FaceNetError) as error:
                ds.read_image(key)
            _one_line(error, 'train.rec record %d' % key, 'too large')
            with pytest.raises(FaceNetError) as error:
                ds.read_checked_bytes(key)
            _one_line(error, 'train.rec record %d' % key, 'too large')
    assert peak.mib < 8, peak.mib


def test_bomb_image_stops_the_training_reader_in_one_line(tmp_path):
    import tensorflow as tf
    rec, idx = _record_dataset(tmp_path / 'ds')
    _rewrite_record(rec, idx, 2, record_writer.pack(recordio.IRHeader(0, 0.0, 2, 0), _bomb_png(8192, 4096)))
    ds = recordio.RecordDataset(str(tmp_path / 'ds'))
    with tf.compat.v1.Graph().as_default():
        image = tf.io.decode_image(ds.encoded_tensor(tf.constant(2, tf.int64)), channels=3,
                                   expand_animations=False)
        with tf.compat.v1.Session() as sess:
            with pytest.raises(tf.errors.OpError) as error:
                sess.run(image)
    assert 'train.rec record 2: image of 8192x4096 pixels is too large' in error.value.message


# ---------------------------------------------------------------- verification sets (.bin)


def _pairs_bin(images=None, issame=(True,)):
    return (images or [_png(1), _png(2)], list(issame))


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, ('touch %s' % self.marker,))


def _bin_with_global(module, name, args_pickle):
    """A protocol-2 pickle calling module.name(*args) (args given as pickle opcodes, ending in a
    TUPLE) as its whole content."""
    return (b'\x80\x02c' + module.encode() + b'\n' + name.encode() + b'\n' + args_pickle + b'R.')


def _bin_cases(tmp_path):
    marker = tmp_path / 'marker'
    huge_bytes = b'\x80\x04\x8e' + struct.pack('<Q', 1 << 40) + b'abc'  # BINBYTES8 of 1 TiB, 3 bytes held
    return {
        'os_system': (pickle.dumps(_pairs_bin([_RunsCode(marker), _png(1)]), protocol=2), 'refusing to load'),
        'os_system_top': (pickle.dumps(_RunsCode(marker)), 'refusing to load'),
        'huge_binbytes8': (huge_bytes, 'not a verification set'),
        'bytearray_of_size': (_bin_with_global('builtins', 'bytearray', b'J\x00\xca\x9a\x3b\x85'),
                              'refusing bytearray(int)'),
        'codecs_zlib': (_bin_with_global('_codecs', 'encode', b'X\x01\x00\x00\x00aX\x04\x00\x00\x00zlib\x86'),
                        "refusing _codecs.encode(str, 'zlib')"),
        'object_array': (pickle.dumps(_pairs_bin([np.array([b'x'], dtype=object), _png(1)]), protocol=2),
                         "refusing numpy dtype 'O8'"),
        'persistent_id': (b'\x80\x02(X\x01\x00\x00\x00xQt.', 'refusing a persistent id'),
        'issame_strings': (pickle.dumps(([_png(1), _png(2)], ['yes'])), 'issame must be a list of booleans'),
        'images_not_bytes': (pickle.dumps(([1, 2], [True])), 'image 0 is not encoded image bytes'),
        'bomb_image': (pickle.dumps(([_png(1), _bomb_png(8192, 4096)], [True])),
                       'image 1: image of 8192x4096 pixels is too large'),
        'huge_image_entry': (pickle.dumps(([_png(1), b'\0' * (verification_sets.MAX_ENCODED_BYTES + 1)], [True])),
                             'image 1 is %d bytes' % (verification_sets.MAX_ENCODED_BYTES + 1)),
        'not_a_pair': (pickle.dumps([b'a']), 'expected a pickled (images, issame) pair'),
    }, marker


BIN_CASES = ['os_system', 'os_system_top', 'huge_binbytes8', 'bytearray_of_size', 'codecs_zlib', 'object_array',
             'persistent_id', 'issame_strings', 'images_not_bytes', 'bomb_image', 'huge_image_entry', 'not_a_pair']


@pytest.mark.parametrize('case', BIN_CASES)
def test_bin_is_unpickled_with_an_allow_list(tmp_path, case):
    cases, marker = _bin_cases(tmp_path)
    data, what = cases[case]
    path = tmp_path / ('%s.bin' % case)
    path.write_bytes(data)
    with _Peak() as peak:
        with pytest.raises(FaceNetError) as error:
            verification_sets.read_bin(str(path))
    _one_line(error, str(path), what)
    assert not marker.exists()
    assert peak.mib < 2 * os.path.getsize(path) / MIB + 8, peak.mib


def test_validate_on_lfw_refuses_a_code_running_bin(tmp_path):
    """The tool: one line naming the .bin, exit 2, nothing run, the file unchanged."""
    cases, marker = _bin_cases(tmp_path)
    path = tmp_path / 'lfw.bin'
    path.write_bytes(cases['os_system'][0])
    before = tree_hashes(tmp_path)
    model = tmp_path / 'model'
    model.mkdir()
    result = run_main(validate_on_lfw, [path, model])
    assert_one_line_error(result, str(path), 'refusing to load posix.system', code=2)
    assert not marker.exists()
    assert tree_hashes(tmp_path) == before


def test_memo_repeated_entries_are_not_copied(tmp_path):
    """One bytearray (an image) listed 200000 times through the pickle memo: converted once."""
    image = bytearray(_png(3, size=64))
    path = tmp_path / 'repeat.bin'
    path.write_bytes(pickle.dumps(([image] * 200000, [True] * 100000), protocol=5))
    with _Peak() as peak:
        images, issame = verification_sets.read_bin(str(path))
    assert len(images) == 200000 and issame.all() and images[0] == bytes(image)
    assert peak.mib < 16, peak.mib


def test_legacy_bins_still_load(tmp_path):
    """The formats insightface sets are found in: protocol 2 with bytes (_codecs.encode), bytearray,
    numpy uint8 images and bool arrays, and protocol 5 arrays."""
    for protocol in (2, 4, 5):
        images = [bytearray(_png(1)), np.frombuffer(_png(2), np.uint8), _png(3), _png(4)]
        path = tmp_path / ('p%d.bin' % protocol)
        path.write_bytes(pickle.dumps((images, np.array([True, False])), protocol=protocol))
        got, issame = verification_sets.read_bin(str(path))
        assert got == [_png(1), _png(2), _png(3), _png(4)] and issame.tolist() == [True, False]


# ---------------------------------------------------------------- tools: outputs, bombs, names


@pytest.fixture
def aligned(tmp_path):
    folder = tmp_path / 'aligned'
    for name in ('Ann', 'Bob'):
        (folder / name).mkdir(parents=True)
        for i in (1, 2):
            (folder / name / ('%s_%04d.png' % (name, i))).write_bytes(_png(50 * i))
    return folder


def test_make_record_refuses_existing_outputs(tmp_path, aligned):
    out = tmp_path / 'rec'
    out.mkdir()
    (out / 'train.idx').write_text('keep me')
    result = run_main(make_record, [aligned, out])
    assert_one_line_error(result, str(out / 'train.idx'), 'exists already', '--overwrite', code=2)
    assert os.listdir(out) == ['train.idx'] and (out / 'train.idx').read_text() == 'keep me'
    assert run_main(make_record, [aligned, out, '--overwrite']).code == 0
    assert len(recordio.RecordDataset(str(out))) == 4

    pairs = tmp_path / 'pairs.txt'
    pairs.write_text('1\nAnn\t1\t2\nAnn\t1\tBob\t2\n')
    target = tmp_path / 'lfw.bin'
    target.write_bytes(b'mine')
    result = run_main(make_record, [aligned, target, '--pairs', pairs])
    assert_one_line_error(result, str(target), 'exists already', code=2)
    assert target.read_bytes() == b'mine'
    assert run_main(make_record, [aligned, target, '--pairs', pairs, '--overwrite']).code == 0
    assert verification_sets.read_bin(str(target))[1].tolist() == [True, False]
    assert sorted(os.listdir(tmp_path)) == ['aligned', 'lfw.bin', 'pairs.txt', 'rec']  # no temporary left


def test_make_record_skips_bombs_and_huge_files(tmp_path, aligned, monkeypatch):
    """A decompression bomb (PIL's DecompressionBombError), an image over the pixel bound and a file
    over the byte bound in the input: each skipped with one note, the rest packed."""
    (aligned / 'Ann' / 'Ann_0003.png').write_bytes(_bomb_png(50000, 50000))
    (aligned / 'Ann' / 'Ann_0004.png').write_bytes(_bomb_png(8192, 4096))
    monkeypatch.setattr(make_record, 'MAX_FILE_BYTES', 1000)
    (aligned / 'Bob' / 'Bob_0003.png').write_bytes(_png(7) + b'\0' * 2000)
    before = tree_hashes(aligned)
    out = tmp_path / 'rec'
    with _Peak() as peak:
        result = run_main(make_record, [aligned, out])
    assert result.code == 0, result
    assert 'Traceback' not in result.err
    for name, reason in (('Ann_0003.png', 'too large'), ('Ann_0004.png', 'too large'),
                         ('Bob_0003.png', 'larger than')):
        notes = [line for line in result.err.splitlines() if name in line]
        assert len(notes) == 1 and reason in notes[0], result
    assert '3 files skipped' in result.out
    assert len(recordio.RecordDataset(str(out))) == 4
    assert tree_hashes(aligned) == before
    assert peak.mib < 16, peak.mib


def test_generate_pairs_refuses_existing_output_and_unwritable_names(tmp_path):
    data = tmp_path / 'faces'
    for name in ['p%d' % i for i in range(4)] + ['two words']:
        (data / name).mkdir(parents=True)
        for i in range(3):
            (data / name / ('%d.png' % i)).write_bytes(b'')
    out = tmp_path / 'pairs.txt'
    out.write_text('mine\n')
    result = run_main(generate_pairs, [data, out, '--nrof_folds', '2', '--nrof_pairs', '1'])
    assert_one_line_error(result, str(out), 'exists already', '--overwrite', code=2)
    assert out.read_text() == 'mine\n'
    result = run_main(generate_pairs, [data, out, '--nrof_folds', '2', '--nrof_pairs', '1', '--overwrite'])
    assert result.code == 0, result
    assert "skipped the folder 'two words'" in result.err
    assert 'two' not in out.read_text()
    assert len(lfw.read_pairs(str(out))) == 4


def test_generate_pairs_memory_does_not_grow_with_the_square_of_a_folder(tmp_path):
    """A person folder of 2000 images has 2 million same-person pairs (4000: 8 million, which took 725 MiB
    and 26 s to list); they are drawn instead, memory set by --nrof_pairs."""
    data = tmp_path / 'faces'
    for name, count in (('p0', 3), ('p1', 3), ('p2', 3), ('p3', 3), ('big', 2000)):
        (data / name).mkdir(parents=True)
        for i in range(count):
            (data / name / ('%05d.png' % i)).write_bytes(b'')
    out = tmp_path / 'pairs.txt'
    with _Peak() as peak:  # in-process: run_tool's peak would include this process's own memory
        result = run_main(generate_pairs, [data, out, '--nrof_folds', '2', '--nrof_pairs', '1'])
    assert result.code == 0, result
    assert peak.mib < 16, peak.mib
    assert len(lfw.read_pairs(str(out))) == 4


def test_killed_make_record_leaves_no_partial_output_and_rerun_matches(tmp_path):
    """SIGKILL while make_record.py writes: no train.rec/train.idx/property appear (only its hidden
    temporaries); a rerun (no --overwrite needed) writes the files of an uninterrupted run."""
    import signal
    import subprocess
    import sys
    import time
    from hostile import script_path
    data = tmp_path / 'aligned'
    for c in range(20):
        (data / ('id%02d' % c)).mkdir(parents=True)
        for i in range(30):
            (data / ('id%02d' % c) / ('%03d.png' % i)).write_bytes(_png((c * 30 + i) % 256))
    out = tmp_path / 'rec'
    proc = subprocess.Popen([sys.executable, script_path('make_record.py'), str(data), str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not (out.is_dir() and any(n.endswith('.tmp') for n in os.listdir(out))):
        assert proc.poll() is None and time.monotonic() < deadline, 'make_record.py ended before it was killed'
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not set(make_record.RECORD_FILES) & set(os.listdir(out))
    assert run_main(make_record, [data, out]).code == 0
    clean = tmp_path / 'clean'
    assert run_main(make_record, [data, clean]).code == 0
    assert tree_hashes(clean) == {n: h for n, h in tree_hashes(out).items() if not n.endswith('.tmp')}


def test_validate_on_lfw_refuses_a_pairs_entry_outside_the_folder(tmp_path, lfw_tree):
    data, outside, secret = lfw_tree
    pairs = tmp_path / 'pairs.txt'
    pairs.write_text('1\nAnn\t1\t2\n%s\t1\t2\n' % outside)
    model = tmp_path / 'model'
    model.mkdir()
    before = tree_hashes(tmp_path)
    result = run_main(validate_on_lfw, [data, model, '--lfw_pairs', pairs, '--lfw_nrof_folds', '2'])
    assert_one_line_error(result, str(pairs), 'line 3', 'not a folder inside', code=2)
    assert tree_hashes(tmp_path) == before
