"""Hostile input for recognize.py, cluster.py and compare.py (docs/security.md): outputs never replace
an input or a file the run did not create, outputs are opened only once inputs and model have loaded,
a FIFO or device is never read, a file that is no video never reaches OpenCV's demuxers, a run that
did nothing fails with one line, and every bad input is one line. A tiny frozen model keeps the runs
in-process and fast; the faces are LFW photos copied into the test's folder."""
import contextlib
import json
import os
import pickle
import signal
import struct

import cv2
import numpy as np

from facenet_tf import cluster
from facenet_tf import compare
from facenet_tf import recognize
from facenet_tf import classify, clustering
from facenet_tf import gallery as gallery_lib, sources as sources_lib
from hostile import (assert_not_in_tree, assert_one_line_error, copy_file, lfw_photo, run_main, secret_file,
                     tree_hashes)


@contextlib.contextmanager
def no_hang(seconds=60):
    """Fail (instead of hanging the suite) when the block takes longer than `seconds`."""
    def stop(*_):
        raise TimeoutError('the run hung')
    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _recognize(*argv):
    with no_hang():
        return run_main(recognize, argv)


def _avi(path, size=(64, 48), frames=3):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), 5.0, size)
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), 40 * i, np.uint8))
    writer.release()
    return str(path)


def _huge_avi(path, tmp_path):
    """An MJPEG AVI of 64x48 frames whose headers (AVI and each JPEG's SOF0) declare 9000x9000."""
    data = bytearray(open(_avi(tmp_path / 'small.avi'), 'rb').read())
    k = data.find(b'\xff\xc0')
    while k >= 0:
        struct.pack_into('>HH', data, k + 5, 9000, 9000)
        k = data.find(b'\xff\xc0', k + 2)
    struct.pack_into('<ii', data, data.find(b'strf') + 12, 9000, 9000)
    struct.pack_into('<II', data, data.find(b'avih') + 40, 9000, 9000)
    os.remove(str(tmp_path / 'small.avi'))
    path.write_bytes(bytes(data))
    return str(path)


def test_annotate_and_output_jsonl_never_replace_inputs_or_existing_files(tmp_path):
    """Every refusal comes before the model is looked for (the model path does not exist: a check
    that let the run through would fail on it instead), and nothing changes."""
    inputs = tmp_path / 'in'
    inputs.mkdir()
    (inputs / 'a.jpg').write_bytes(b'photo bytes')
    video = tmp_path / 'clip.avi'
    video.write_bytes(b'RIFF video bytes')
    (tmp_path / 'out').mkdir()
    (tmp_path / 'out' / 'a.jpg').write_bytes(b'an earlier result')
    (tmp_path / 'notes.txt').write_text('a file')
    (tmp_path / 'old.jsonl').write_text('{"kept": 1}\n')
    before = tree_hashes(tmp_path)
    model = tmp_path / 'model.pb'
    cases = [
        ([inputs, '--annotate', inputs], 'must not be, contain or lie inside the input folder'),
        ([inputs, '--annotate', inputs / 'annotated'], 'must not be, contain or lie inside the input folder'),
        ([inputs, '--annotate', tmp_path, '--overwrite'], 'must not be, contain or lie inside the input folder'),
        ([inputs, video, '--annotate', inputs / 'clip.mp4', '--overwrite'], 'lie inside the input folder'),
        ([inputs / 'a.jpg', '--annotate', inputs, '--overwrite'], 'would replace an input file'),
        ([video, '--annotate', video, '--overwrite'], 'would replace an input file'),
        ([inputs, '--annotate', tmp_path / 'out'], 'exists already and was not made by this run'),
        ([inputs, '--annotate', tmp_path / 'notes.txt', '--overwrite'], 'names an existing file, not a folder'),
        ([inputs, '--output_jsonl', tmp_path / 'old.jsonl'], 'exists already and was not made by this run'),
        ([inputs, '--output_jsonl', inputs / 'a.jpg', '--overwrite'], 'would replace an input file'),
        ([inputs, '--output_jsonl', tmp_path / 'no' / 'x.jsonl'], 'folder of --output_jsonl does not exist'),
    ]
    for argv, message in cases:
        result = _recognize(model, *argv, '--classifier', tmp_path / 'missing.pkl')
        line = assert_one_line_error(result, message, code=2)
        assert str(tmp_path) in line, line
        assert tree_hashes(tmp_path) == before, argv


def test_outputs_are_made_only_once_the_model_has_loaded(tmp_path, gallery, data_dir):
    photo = copy_file(lfw_photo(data_dir, 'Colin_Powell', 3), tmp_path / 'in' / 'c.jpg')
    result = _recognize(tmp_path / 'missing.pb', photo, '--gallery', gallery, '--output_jsonl', tmp_path / 'new.jsonl',
                        '--annotate', tmp_path / 'annotated')
    assert_one_line_error(result, 'missing.pb', code=2)
    assert sorted(os.listdir(str(tmp_path))) == ['gallery', 'in']


def test_a_mixed_folder_of_bad_sources(tiny_pb, data_dir, gallery, tmp_path):
    """FIFOs named like photos and videos, a device, a text file, an HLS playlist named .mp4 that
    points at a secret file and a network address, a truncated mp4, a video declaring 9000x9000
    frames, a photo with a newline in its name, and gallery files that are unreadable or FIFOs: each
    is one note, the run goes on, nothing hangs, the JSON lines are valid, the inputs are unchanged."""
    secret, secret_bytes = secret_file(tmp_path)
    inputs = tmp_path / 'in'
    copy_file(lfw_photo(data_dir, 'Colin_Powell', 4), inputs / 'a.jpg')
    copy_file(lfw_photo(data_dir, 'Serena_Williams', 4), inputs / 'b\nc.jpg')
    os.mkfifo(str(inputs / 'fifo.jpg'))
    (inputs / 'broken.png').write_text('not an image')
    other = tmp_path / 'other'
    other.mkdir()
    (other / 'playlist.mp4').write_text('#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nfile://%s\n'
                                        '#EXTINF:1,\nhttp://127.0.0.1:9/x.ts\n#EXT-X-ENDLIST\n' % secret)
    (other / 'list.mp4').write_text('ffconcat version 1.0\nfile %s\n' % secret)
    _avi(other / 'real.avi')
    full = open(str(other / 'real.avi'), 'rb').read()
    (other / 'truncated.avi').write_bytes(full[:300])
    _huge_avi(other / 'huge.avi', other)
    os.mkfifo(str(other / 'pipe.mp4'))
    os.mkfifo(str(gallery / 'Colin_Powell' / 'fifo.jpg'))
    (gallery / 'Serena_Williams' / 'broken.jpg').write_text('nope')
    before_in, before_other = tree_hashes(inputs), tree_hashes(other)
    before_gallery = tree_hashes(gallery)
    out, annotated = tmp_path / 'faces.jsonl', tmp_path / 'annotated'
    result = _recognize(tiny_pb, inputs, other / 'playlist.mp4', other / 'list.mp4', other / 'truncated.avi',
                        other / 'huge.avi', other / 'pipe.mp4', '/dev/null', '--gallery', gallery,
                        '--output_jsonl', out, '--annotate', annotated)
    assert result.code == 0 and 'Traceback' not in result.err and 'error:' not in result.err, result
    err = result.err
    assert '%s: cannot read (' % (inputs / 'broken.png') in err
    for name in ('playlist.mp4', 'list.mp4'):
        assert '%s: not a video file (no known container signature): skipped' % (other / name) in err
    assert '%s: cannot open as a video: skipped' % (other / 'truncated.avi') in err
    assert '%s: frames of 9000x9000 pixels, more than %d: skipped' % (other / 'huge.avi',
                                                                         sources_lib.MAX_VIDEO_PIXELS) in err
    assert '%s: not a regular file' % (other / 'pipe.mp4') in err and '/dev/null: not a regular file' in err
    assert 'fifo.jpg' not in err   # never listed: not a regular file
    assert 'gallery: cannot read %s' % (gallery / 'Serena_Williams' / 'broken.jpg') in err
    with open(str(out)) as f:
        lines = f.read().split('\n')
    assert lines[-1] == '' and len(lines) >= 3
    records = [json.loads(line) for line in lines[:-1]]
    assert {r['source'] for r in records} == {str(inputs / 'a.jpg'), str(inputs / 'b\nc.jpg')}
    assert sorted(os.listdir(str(annotated))) == ['a.jpg', 'b\nc.jpg']
    assert tree_hashes(inputs) == before_in and tree_hashes(other) == before_other
    after_gallery = tree_hashes(gallery)
    after_gallery.pop(gallery_lib.GALLERY_CACHE)
    assert after_gallery == before_gallery
    assert_not_in_tree(secret_bytes, annotated)
    assert secret_bytes not in open(str(out), 'rb').read()


def test_overwrite_replaces_outputs_but_writes_through_no_link(tiny_pb, data_dir, gallery, tmp_path):
    """With --overwrite an earlier annotated photo and JSON file are replaced; a link in the output
    folder is replaced itself, its target outside is untouched."""
    secret, secret_bytes = secret_file(tmp_path)
    photo = copy_file(lfw_photo(data_dir, 'Colin_Powell', 5), tmp_path / 'in' / 'a.jpg')
    annotated = tmp_path / 'annotated'
    annotated.mkdir()
    os.symlink(secret, str(annotated / 'a.jpg'))
    (tmp_path / 'faces.jsonl').write_text('old\n')
    result = _recognize(tiny_pb, photo, '--gallery', gallery, '--annotate', annotated, '--output_jsonl',
                        tmp_path / 'faces.jsonl', '--overwrite')
    assert result.code == 0, result
    assert open(secret, 'rb').read() == secret_bytes
    assert not os.path.islink(str(annotated / 'a.jpg')) and cv2.imread(str(annotated / 'a.jpg')) is not None
    assert [json.loads(line)['source'] for line in open(str(tmp_path / 'faces.jsonl'))] == [photo]


def test_a_run_that_did_nothing_fails_with_one_line(tiny_pb, data_dir, gallery, tmp_path):
    (tmp_path / 'in').mkdir()
    os.mkfifo(str(tmp_path / 'in' / 'only_a_fifo.jpg'))
    result = _recognize(tiny_pb, tmp_path / 'in', '--gallery', gallery)
    assert_one_line_error(result, 'no source to read among', code=2)
    (tmp_path / 'broken.jpg').write_text('not an image')
    out = tmp_path / 'faces.jsonl'
    result = _recognize(tiny_pb, tmp_path / 'broken.jpg', '--gallery', gallery, '--output_jsonl', out)
    assert_one_line_error(result, 'nothing read: every source was skipped (1 skipped)', code=2)
    assert not os.path.exists(str(out))
    cv2.imwrite(str(tmp_path / 'flat.png'), np.full((120, 160, 3), 128, np.uint8))
    result = _recognize(tiny_pb, tmp_path / 'flat.png', '--gallery', gallery, '--output_jsonl', out)
    assert_one_line_error(result, 'no face found in 1 frames of 1 sources', code=2)
    assert not os.path.exists(str(out)) and not [n for n in os.listdir(str(tmp_path)) if n.endswith('.tmp')]


def test_bad_galleries_are_one_line(tiny_pb, data_dir, tmp_path):
    photo = copy_file(lfw_photo(data_dir, 'Colin_Powell', 6), tmp_path / 'in' / 'a.jpg')
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'empty' / 'Nobody').mkdir()
    (tmp_path / 'empty' / 'loose.jpg').write_text('')
    assert_one_line_error(_recognize(tiny_pb, photo, '--gallery', tmp_path / 'empty'),
                          str(tmp_path / 'empty'), 'no person folder with images', code=2)
    assert_one_line_error(_recognize(tiny_pb, photo, '--gallery', tmp_path / 'none'),
                          str(tmp_path / 'none'), 'gallery folder does not exist', code=2)
    (tmp_path / 'bad' / 'Someone').mkdir(parents=True)
    (tmp_path / 'bad' / 'Someone' / 'x.jpg').write_text('not an image')
    result = _recognize(tiny_pb, photo, '--gallery', tmp_path / 'bad')
    assert_one_line_error(result, str(tmp_path / 'bad'), 'no face found in the gallery', code=2)
    assert 'gallery: cannot read %s' % (tmp_path / 'bad' / 'Someone' / 'x.jpg') in result.err


def test_a_gallery_cache_that_is_a_link_is_neither_read_nor_replaced(tiny_pb, data_dir, gallery, tmp_path):
    secret, secret_bytes = secret_file(tmp_path)
    cache = gallery / gallery_lib.GALLERY_CACHE
    os.symlink(secret, str(cache))
    photo = copy_file(lfw_photo(data_dir, 'Colin_Powell', 7), tmp_path / 'in' / 'a.jpg')
    result = _recognize(tiny_pb, photo, '--gallery', gallery)
    assert result.code == 0, result
    assert 'cache not written: %s is not a regular file' % cache in result.err
    assert os.readlink(str(cache)) == secret and open(secret, 'rb').read() == secret_bytes
    assert secret_bytes.decode() not in result.out + result.err


class _RunsCode(object):
    def __reduce__(self):
        return (os.system, ('touch %s' % self.marker,))


def test_hostile_and_mismatched_classifier_files(tiny_pb, data_dir, tmp_path):
    photo = copy_file(lfw_photo(data_dir, 'Colin_Powell', 8), tmp_path / 'in' / 'a.jpg')
    marker = tmp_path / 'ran'
    payload = _RunsCode()
    payload.marker = marker
    (tmp_path / 'evil.pkl').write_bytes(pickle.dumps((payload, ['a'])))
    result = _recognize(tiny_pb, photo, '--classifier', tmp_path / 'evil.pkl')
    assert_one_line_error(result, str(tmp_path / 'evil.pkl'), code=2)
    assert not marker.exists()
    rng = np.random.default_rng(0)
    model = classify.train(rng.normal(size=(30, 8)).astype(np.float32), np.repeat([0, 1, 2], 10))
    classify.save(str(tmp_path / 'short.pkl'), model, ['a', 'b'])   # three classes, two names
    assert_one_line_error(_recognize(tiny_pb, photo, '--classifier', tmp_path / 'short.pkl'),
                          str(tmp_path / 'short.pkl'), code=2)
    classify.save(str(tmp_path / 'eight.pkl'), model, ['a', 'b', 'c'])
    out = tmp_path / 'faces.jsonl'
    result = _recognize(tiny_pb, photo, '--classifier', tmp_path / 'eight.pkl', '--output_jsonl', out)
    assert_one_line_error(result, str(tmp_path / 'eight.pkl'), 'takes 8-D embeddings, the model gives 648-D', code=2)
    assert not out.exists()


def test_cluster_keeps_both_faces_of_x_jpg_and_x_png_and_refuses_its_input(tiny_pb, data_dir, tmp_path):
    photos = tmp_path / 'photos'
    copy_file(lfw_photo(data_dir, 'Colin_Powell', 9), photos / 'p' / 'x.jpg')
    cv2.imwrite(str(photos / 'p' / 'x.png'), cv2.imread(lfw_photo(data_dir, 'Colin_Powell', 10)))
    copy_file(lfw_photo(data_dir, 'Serena_Williams', 9), photos / 'q' / 'y.jpg')
    os.mkfifo(str(photos / 'q' / 'fifo.jpg'))
    before = tree_hashes(photos)
    with no_hang():
        result = run_main(cluster, [tiny_pb, photos, tmp_path / 'out', '--min_samples', 1])
    assert result.code == 0, result
    crops = sorted(os.listdir(str(tmp_path / 'out' / 'crops' / 'p')))
    assert 'x_jpg_0.png' in crops and 'x_png_0.png' in crops, crops
    sources = [line.split(',')[2] for line in open(str(tmp_path / 'out' / clustering.CSV_NAME))][1:]
    assert str(photos / 'p' / 'x.jpg') in sources and str(photos / 'p' / 'x.png') in sources
    assert tree_hashes(photos) == before
    for output in (photos, photos / 'clusters'):
        with no_hang():
            result = run_main(cluster, [tiny_pb, photos, output])
        assert_one_line_error(result, str(output), 'must not be or lie inside the input folder', code=2)
    assert tree_hashes(photos) == before and not (photos / 'clusters').exists()


def test_cluster_and_compare_fail_when_nothing_was_processed(tiny_pb, data_dir, tmp_path):
    flat = tmp_path / 'flat'
    flat.mkdir()
    cv2.imwrite(str(flat / 'grey.png'), np.full((120, 160, 3), 128, np.uint8))
    with no_hang():
        result = run_main(cluster, [tiny_pb, flat, tmp_path / 'out'])
    assert_one_line_error(result, 'no face found under %s (1 image files)' % flat, code=2)
    assert not (tmp_path / 'out').exists()
    os.mkfifo(str(tmp_path / 'a.jpg'))
    photo = copy_file(lfw_photo(data_dir, 'Colin_Powell', 11), tmp_path / 'b.jpg')
    with no_hang():
        result = run_main(compare, [tiny_pb, tmp_path / 'a.jpg', photo])
    assert_one_line_error(result, 'need at least two images with a detectable face, got 1', code=2)
    assert '%s: not a regular file' % (tmp_path / 'a.jpg') in result.err


def test_a_killed_run_leaves_no_partial_output_and_a_rerun_completes(tiny_pb, data_dir, gallery, tmp_path):
    """SIGKILL while a video is being recognised: neither the JSON file nor the annotated video
    exists (only hidden temporary files); the rerun removes those, needs no --overwrite and writes
    every frame's faces and the whole video."""
    import subprocess
    import sys
    import time
    from hostile import script_path
    face = cv2.resize(cv2.imread(lfw_photo(data_dir, 'Colin_Powell', 12)), (160, 160))
    video = str(tmp_path / 'clip.avi')
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*'MJPG'), 10.0, (160, 160))
    for _ in range(100):
        writer.write(face)
    writer.release()
    out, annotated = tmp_path / 'faces.jsonl', tmp_path / 'annotated.avi'
    argv = [tiny_pb, video, '--gallery', gallery, '--output_jsonl', out, '--annotate', annotated,
            '--every_n_frames', 10]
    proc = subprocess.Popen([sys.executable, script_path('recognize.py')] + [str(a) for a in argv],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))
    deadline = time.monotonic() + 60
    while not [n for n in os.listdir(str(tmp_path)) if n.endswith('.tmp.avi')] and time.monotonic() < deadline:
        assert proc.poll() is None, 'the run ended before it was killed'
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    assert not out.exists() and not annotated.exists()
    assert sorted(n for n in os.listdir(str(tmp_path)) if n.startswith('.')) == \
        ['.annotated.%d.tmp.avi' % proc.pid, '.faces.jsonl.%d.tmp' % proc.pid]
    result = _recognize(*argv)
    assert result.code == 0, result
    assert not [n for n in os.listdir(str(tmp_path)) if n.startswith('.')]
    assert [r['frame'] for r in map(json.loads, open(str(out)))] == list(range(0, 100, 10))
    capture = cv2.VideoCapture(str(annotated))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 100
    capture.release()


def test_cluster_aligned_leaves_out_an_unreadable_crop(tiny_pb, data_dir, tmp_path):
    crops = tmp_path / 'crops'
    (crops / 'p').mkdir(parents=True)
    cv2.imwrite(str(crops / 'p' / 'good.png'), cv2.resize(cv2.imread(lfw_photo(data_dir, 'Colin_Powell', 13)), (160, 160)))
    (crops / 'p' / 'bad.png').write_bytes(b'\x89PNG\r\n\x1a\n truncated')
    with no_hang():
        result = run_main(cluster, [tiny_pb, crops, tmp_path / 'out', '--aligned', '--min_samples', 1])
    assert result.code == 0 and 'Traceback' not in result.err, result
    assert 'cannot read %s (' % (crops / 'p' / 'bad.png') in result.err
    assert len(open(str(tmp_path / 'out' / clustering.CSV_NAME)).read().splitlines()) == 2


def test_a_killed_cluster_run_is_finished_by_the_rerun(tiny_pb, data_dir, tmp_path):
    """SIGKILL once crops are being written: the rerun into the same folder takes over what the
    killed run left (its mark) and gives the files of an uninterrupted run; a folder without that
    mark is still refused."""
    import subprocess
    import sys
    import time
    from hostile import script_path
    photos = tmp_path / 'photos'
    for person, numbers in (('Colin_Powell', range(14, 19)), ('Serena_Williams', range(14, 19))):
        for i in numbers:
            copy_file(lfw_photo(data_dir, person, i), photos / person / ('%d.jpg' % i))
    argv = [tiny_pb, photos, tmp_path / 'killed', '--min_samples', 1]
    proc = subprocess.Popen([sys.executable, script_path('cluster.py')] + [str(a) for a in argv],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))
    crops = tmp_path / 'killed' / clustering.CROPS_FOLDER
    deadline = time.monotonic() + 60
    while not (crops.is_dir() and list(crops.rglob('*.png'))) and time.monotonic() < deadline:
        assert proc.poll() is None, 'the run ended before it was killed'
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    assert (tmp_path / 'killed' / clustering.UNFINISHED).exists()
    assert not (tmp_path / 'killed' / clustering.CSV_NAME).exists()
    with no_hang():
        rerun = run_main(cluster, argv)
        whole = run_main(cluster, [tiny_pb, photos, tmp_path / 'whole', '--min_samples', 1])
    assert rerun.code == 0 and whole.code == 0, (rerun, whole)
    assert rerun.out.replace(str(tmp_path / 'killed'), str(tmp_path / 'whole')) == whole.out
    assert tree_hashes(tmp_path / 'killed') == tree_hashes(tmp_path / 'whole')   # crops and clusters.csv

    def links(folder):
        return sorted((os.path.relpath(os.path.join(d, n), str(folder)), os.readlink(os.path.join(d, n)))
                      for d, _, names in os.walk(str(folder)) for n in names if os.path.islink(os.path.join(d, n)))
    assert links(tmp_path / 'killed') == links(tmp_path / 'whole') and links(tmp_path / 'whole')
    assert not [n for d, _, names in os.walk(str(tmp_path / 'killed')) for n in names if n.startswith('.')]
    (tmp_path / 'other').mkdir()
    (tmp_path / 'other' / 'keep.txt').write_text('not made by cluster.py')
    assert_one_line_error(run_main(cluster, [tiny_pb, photos, tmp_path / 'other']), 'not an empty folder', code=2)
