"""Hostile input to the aligner and the image reader (docs/security.md): names that collide, kills,
huge and bomb images, FIFOs, symbolic links, odd files, and runs that process nothing."""
import glob
import io
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib

import numpy as np
from PIL import Image

import hostile
from facenet_tf.align import align_dataset_mtcnn as script
from facenet_tf.align import alignment_plan
from facenet_tf.align import detect_face as df
from facenet_tf.align import mtcnn_boxes as mb
from facenet_tf import sharding
from facenet_tf.images import ImageReadError, read_rgb

LFW = 'lfw_deepfunneled'


def _face(data_dir, person='Ai_Sugiyama', n=1):
    return os.path.join(data_dir, LFW, person, '%s_%04d.jpg' % (person, n))


def _align(src, out, *flags):
    return hostile.run_main(script, [str(src), str(out), '--image_size', '64'] + list(flags))


def _lines(out):
    """Every bounding-box line of an output folder: (path relative to it, box fields)."""
    lines = []
    for path in glob.glob(os.path.join(str(out), 'bounding_boxes_*.txt')):
        with open(path, encoding='utf-8', errors='surrogateescape') as f:
            for line in f:
                assert line.endswith('\n'), (path, line)
                name, _, box = line[:-1].partition('.png')
                lines.append((os.path.relpath(name + '.png', str(out)), box.split()))
    return lines


def _crops(out):
    return {k: v for k, v in hostile.tree_hashes(out).items() if k.endswith('.png')}


def _chunk(tag, data):
    return struct.pack('>I', len(data)) + tag + data + struct.pack('>I', zlib.crc32(tag + data) & 0xffffffff)


def _png(path, width, height, rows, chunks=()):
    """Write an 8-bit RGB PNG whose deflate stream is built from `rows`: (count, one raw row) pairs.
    Repeated rows are compressed once and their blocks repeated (a full flush makes each block
    independent), so a flat 12000 x 12000 image is written in a second."""
    blocks, adler, cache = [], 1, {}
    for count, row in rows:
        raw = b'\x00' + row
        group = max(1, min(count, (1 << 22) // len(raw)))
        for done in range(0, count, group):
            n = min(group, count - done)
            key = (raw, n)
            if key not in cache:
                c = zlib.compressobj(1, zlib.DEFLATED, -15)
                cache[key] = c.compress(raw * n) + c.flush(zlib.Z_FULL_FLUSH)
            blocks.append(cache[key])
            adler = zlib.adler32(raw * n, adler)
    stream = b'\x78\x01' + b''.join(blocks) + b'\x03\x00' + struct.pack('>I', adler)
    head = _chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0))
    with open(path, 'wb') as f:
        f.write(b'\x89PNG\r\n\x1a\n' + head + b''.join(chunks) + _chunk(b'IDAT', stream) + _chunk(b'IEND', b''))


def _huge_face_png(path, face_path, side=12000, face_side=1000):
    """A side x side PNG: flat grey with a real face photo (upscaled) in the middle; ~2 MB on disk."""
    face = np.asarray(Image.open(face_path).convert('RGB').resize((face_side, face_side), Image.BILINEAR))
    grey = bytes([128]) * (3 * side)
    left = (side - face_side) // 2
    rows = [(left, grey)]
    for y in range(face_side):
        rows.append((1, grey[:3 * left] + face[y].tobytes() + grey[3 * (left + face_side):]))
    rows.append((side - left - face_side, grey))
    _png(path, side, side, rows)


# ---------------------------------------------------------------------------------------------
# Case 1: x.jpg and x.png in one class; odd files in one run; resume

def test_same_stems_and_odd_files_in_one_run(data_dir, tmp_path):
    d = tmp_path / 'in' / 'odd'
    d.mkdir(parents=True)
    face = Image.open(_face(data_dir)).convert('RGB')
    other = Image.open(_face(data_dir, 'Ahmed_Chalabi')).convert('RGB')
    face.save(str(d / 'x.jpg'), quality=95)
    other.save(str(d / 'x.png'))
    face.save(str(d / 'IMG 0001.jpg'), quality=95)                    # a space in the name
    face.save(os.path.join(os.fsencode(str(d)), b'caf\xe9.jpg'), quality=95)  # not UTF-8
    exif = Image.Exif()
    exif[0x0112] = 99                                                   # garbage orientation
    face.save(str(d / 'garbage_exif.jpg'), quality=95, exif=exif.tobytes())
    Image.new('RGB', (1, 100000), (128, 128, 128)).save(str(d / 'line.png'))   # 1 x 100000
    frames = [Image.new('P', (8, 8), i % 2) for i in range(10000)]     # 10,000 frames
    frames[0].save(str(d / 'anim.gif'), save_all=True, append_images=frames[1:], duration=1)
    buf = io.BytesIO()
    face.save(buf, format='PNG')
    png = buf.getvalue()                                                # a 64 MB iCCP profile
    iccp = _chunk(b'iCCP', b'p\x00\x00' + zlib.compress(b'\x00' * (64 << 20), 9))
    (d / 'iccp.png').write_bytes(png[:33] + iccp + png[33:])
    (d / 'notes.jpg').write_text('not an image\n')
    face.save(str(d / 'two\nlines.jpg'), quality=95)                  # a line break in the name
    os.mkfifo(str(d / 'fifo.jpg'))                                      # must never be opened
    before = hostile.tree_hashes(tmp_path / 'in')
    out = tmp_path / 'out'

    result = _align(tmp_path / 'in', out)
    assert result.code == 0, result
    assert 'Traceback' not in result.out + result.err
    written = sorted(_crops(out))
    assert written == sorted(os.path.join('odd', n) for n in (
        'x_jpg.png', 'x_png.png', 'IMG 0001.png', 'caf\udce9.png', 'garbage_exif.png'))
    with Image.open(str(out / 'odd' / 'x_jpg.png')) as a, Image.open(str(out / 'odd' / 'x_png.png')) as b:
        assert np.asarray(a).tobytes() != np.asarray(b).tobytes()      # two faces, both kept
    notes = result.err.splitlines()
    for name, kind in (('line.png', 'no face: '), ('anim.gif', 'no face: '), ('iccp.png', 'unreadable: '),
                       ('notes.jpg', 'unreadable: '), ('two\\nlines.jpg', 'unreadable: ')):
        assert sum(line.startswith(kind) and name in line for line in notes) == 1, (name, result)
    assert not any('fifo.jpg' in line for line in notes)
    assert ('Total number of images: 10, successfully aligned: 5 (5 faces written), no face: 2, '
            'unreadable: 3') in result.out
    lines = _lines(out)
    boxed = sorted(name for name, box in lines if box)
    assert boxed == written                                             # every crop its one line
    assert len(lines) == 7
    crops = _crops(out)

    again = _align(tmp_path / 'in', out)                                # resume: nothing redone
    assert again.code == 0, again
    assert '7 of 10 images already aligned by an earlier run' in again.err
    assert sorted(_lines(out)) == sorted(lines) and _crops(out) == crops
    assert hostile.tree_hashes(tmp_path / 'in') == before


# ---------------------------------------------------------------------------------------------
# Case 2: a SIGKILL at any moment of an unsharded run, then a rerun

def test_killed_run_and_rerun_equal_an_uninterrupted_run(data_dir, tmp_path):
    lfw = os.path.join(data_dir, LFW)
    people = sorted(p for p in os.listdir(lfw) if len(os.listdir(os.path.join(lfw, p))) >= 3)[:20]  # enough images that a kill after 3 crops lands mid-run
    src = tmp_path / 'in'
    for person in people:
        (src / person).mkdir(parents=True)
        for name in sorted(os.listdir(os.path.join(lfw, person)))[:3]:
            os.symlink(os.path.join(lfw, person, name), str(src / person / name))
    Image.new('RGB', (120, 120), (0, 0, 0)).save(str(src / people[3] / 'blank.png'))
    total = 3 * len(people) + 1
    out, ref = tmp_path / 'out', tmp_path / 'ref'
    proc = subprocess.Popen([sys.executable, hostile.script_path('align/align_dataset_mtcnn.py'), str(src), str(out),
                             '--image_size', '64'], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=hostile.ROOT)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and len(glob.glob(str(out / '*' / '*.png'))) < 3:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, 'the run should have been killed part-way'
    assert glob.glob(str(out / '*' / '*.png'))
    assert len(alignment_plan.previous_runs(str(out))[1]) < total   # crops without their lines
    partial = out / 'bounding_boxes_99999.txt'                          # a kill in the middle of a line
    with open(str(partial), 'a') as f:
        f.write('%s 1 2' % (out / people[0] / 'x.png'))

    rerun = _align(src, out)
    assert rerun.code == 0, rerun
    uninterrupted = _align(src, ref)
    assert uninterrupted.code == 0, uninterrupted
    assert _crops(out) == _crops(ref)                                   # byte-identical crops
    got = sorted((name, box) for name, box in _lines(out))
    assert got == sorted(_lines(ref))                                   # same lines, each once
    assert len(got) == total and len(set(n for n, _ in got)) == total
    assert sorted(n for n, box in got if box) == sorted(_crops(out))
    assert not glob.glob(str(out / '*' / '.*'))                         # no temporary left
    assert partial.read_text() == '' or partial.read_text().endswith('\n')


# ---------------------------------------------------------------------------------------------
# Case 3: memory and decompression bombs

def test_huge_png_and_bomb_bounded_in_one_run(data_dir, tmp_path):
    d = tmp_path / 'in' / 'p'
    d.mkdir(parents=True)
    _huge_face_png(str(d / 'huge.png'), _face(data_dir))
    _png(str(d / 'bomb.png'), 30000, 30000, [(1, bytes(90000))])        # 900 MP declared, 100 bytes
    os.symlink(_face(data_dir, 'Ahmed_Chalabi'), str(d / 'face.jpg'))
    os.mkfifo(str(d / 'a.jpg'))
    assert os.path.getsize(str(d / 'huge.png')) < 4 << 20
    out = tmp_path / 'out'
    result = hostile.run_tool('align/align_dataset_mtcnn.py', [tmp_path / 'in', out, '--image_size', '64',
                                                              '--max_detect_side', '3000'], timeout=120)
    assert result.code == 0, result
    assert 'Traceback' not in result.out + result.err
    notes = [line for line in result.err.splitlines() if line.startswith('unreadable: ')]
    assert len(notes) == 1 and 'bomb.png' in notes[0] and 'image too large' in notes[0]
    assert sorted(_crops(out)) == ['p/face.png', 'p/huge.png']
    box = [int(v) for v in dict(_lines(out))['p/huge.png']]
    assert all(5500 <= v <= 6500 for v in box), box                     # the face, in full-size pixels
    # reading 144 MP takes ~1.4 GB (PIL's 4-byte pixels + the array); the whole run stays under:
    assert result.peak_mib < 2300, result


def test_tiled_pnet_gives_the_untiled_boxes_bit_for_bit(data_dir):
    for n in (12, 13, 500, 1024, 1025, 1035, 4801):
        tiles = mb.pnet_tiles(n, 100)
        assert sum(t[3] for t in tiles) == mb.pnet_map_size(n)
        assert all(t[0] % 2 == 0 and t[2] == t[0] // 2 for t in tiles)
    img = read_rgb(os.path.join(data_dir, 'detection_photos', 'multiface.jpg'))
    with df.MTCNN() as det:
        g = det._graph
        pyr = det.pyramid(img)
        found = []
        for tile, call_pixels in ((1 << 30, 1 << 40), (128, 1 << 15)):
            cands = df._stage_pnet([pyr], det.threshold[0], g.pnet, tile, call_pixels)
            refined = df._stage_rnet([img], cands, det.threshold[1], g.rnet)
            found.append((cands[0],) + tuple(df._stage_onet([img], refined, det.threshold[2], g.onet)[0]))
    assert found[0][1].shape[0] >= 5
    for whole, tiled in zip(*found):
        np.testing.assert_array_equal(whole, tiled)


# ---------------------------------------------------------------------------------------------
# Case 4: only regular files are read; outputs never through symbolic links

def _read_soon(path):
    box = {}

    def target():
        try:
            box['value'] = read_rgb(path)
        except ImageReadError as e:
            box['error'] = str(e)
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), 'read_rgb hangs on %s' % path
    return box


def test_read_rgb_refuses_what_is_not_a_regular_file(tmp_path):
    os.mkfifo(str(tmp_path / 'a.jpg'))
    assert _read_soon(str(tmp_path / 'a.jpg')) == {'error': 'not a regular file'}
    assert _read_soon('/dev/zero') == {'error': 'not a regular file'}
    assert _read_soon(str(tmp_path)) == {'error': 'not a regular file'}
    assert _read_soon(str(tmp_path / 'missing.jpg')) == {'error': 'no such file'}


def test_outputs_are_never_written_through_symbolic_links(data_dir, tmp_path):
    src = tmp_path / 'in'
    (src / 'p').mkdir(parents=True)
    (src / 'q').mkdir()
    os.symlink(_face(data_dir), str(src / 'p' / 'a.jpg'))    # an input link: read (the user's choice)
    os.symlink(_face(data_dir, 'Ahmed_Chalabi'), str(src / 'q' / 'b.jpg'))
    outside = tmp_path / 'outside'
    outside.mkdir()
    secret, data = hostile.secret_file(outside)
    out = tmp_path / 'out'
    out.mkdir()
    os.symlink(str(outside), str(out / 'q'))                 # a class folder leading outside
    os.symlink(secret, str(out / 'bounding_boxes_shard_0_of_2.txt'))
    before = hostile.tree_hashes(outside)

    result = _align(src, out)
    assert result.code == 0, result
    assert sum('skipped 1 images of class q' in line and 'symbolic link' in line
               for line in result.err.splitlines()) == 1
    assert sorted(_crops(out)) == ['p/a.png']
    result = _align(src, out, '--shard', '0/2')
    hostile.assert_one_line_error(result, 'bounding_boxes_shard_0_of_2.txt', 'symbolic link', code=2)
    assert hostile.tree_hashes(outside) == before
    hostile.assert_not_in_tree(data, out / 'p')


# ---------------------------------------------------------------------------------------------
# Case 5 and more: nothing processed, the output folder

def test_runs_that_align_nothing_exit_non_zero(tmp_path):
    (tmp_path / 'empty' / 'p').mkdir(parents=True)
    result = _align(tmp_path / 'empty', tmp_path / 'out1')
    assert result.code == 1 and 'No images found in' in result.out, result
    d = tmp_path / 'blank' / 'p'
    d.mkdir(parents=True)
    Image.new('RGB', (200, 200), (10, 200, 30)).save(str(d / 'green.png'))
    result = _align(tmp_path / 'blank', tmp_path / 'out2')
    assert result.code == 1 and 'No face found in any of 1 images in' in result.out, result
    assert 'Traceback' not in result.out + result.err
    other = 1 - sharding.shard_of('p', 2)                              # a shard without classes: fine
    result = _align(tmp_path / 'blank', tmp_path / 'out3', '--shard', '%d/2' % other)
    assert result.code == 0 and 'the other shards have them' in result.err, result


def test_output_folder_problems(data_dir, tmp_path):
    src = tmp_path / 'in'
    (src / 'p').mkdir(parents=True)
    os.symlink(_face(data_dir), str(src / 'p' / 'a.jpg'))
    a_file = tmp_path / 'file.txt'
    a_file.write_text('keep me\n')
    before = hostile.tree_hashes(tmp_path)
    result = _align(src, a_file)                                        # the output is a file
    hostile.assert_one_line_error(result, str(a_file), 'not a folder', code=2)
    result = _align(src, src)                                           # the output is the input
    hostile.assert_one_line_error(result, str(src), 'is the input folder', code=2)
    assert hostile.tree_hashes(tmp_path) == before

    inner = src / 'aligned'                                             # output inside the input
    first = _align(src, inner)
    assert first.code == 0 and sorted(_crops(inner)) == ['p/a.png'], first
    second = _align(src, inner)
    assert second.code == 0, second
    assert '1 of 1 images already aligned' in second.err and 'unreadable: /' not in second.err, second
    assert len(_lines(inner)) == 1
