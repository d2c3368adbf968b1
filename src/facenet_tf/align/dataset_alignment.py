"""Aligning a dataset folder with MTCNN: the classic outputs, robust to bad input, resumable, batched.

Layout (as the classic tool): one output folder per class, `<stem>.png` crops (`<stem>_<i>.png` for
every face with multiple faces), `bounding_boxes_<random>.txt` with one `path x1 y1 x2 y2` line per
crop (the output path alone when no face was found) and `revision_info.txt`. Images of one class
that share a stem (`x.jpg`, `x.png`) get distinct names (`x_jpg.png`, `x_png.png`; see
facenet_tf.dataset.output_stems).

Every file is written under a temporary name and renamed, so an interrupted run leaves no partial
PNG. An image counts as done only when an earlier bounding-box file lists its crop (with multiple
faces `_0`, written last) or lists it as having no face: a run killed between writing a crop and its
line redoes that image (same pixels, written again), so the bounding-box files together list every
crop once. A bounding-box file is locked while its run writes it; a later run cuts the partial last
line (a kill during a write) of files no live run holds.

A shard (facenet_tf.sharding) aligns only its classes and appends to its own
`bounding_boxes_shard_<i>_of_<n>.txt`.

Links: a symbolic link in the input folder is followed (what the user's folder links to is the
user's choice); outputs are never written through one: a class output folder that is a link is
skipped with a note, a bounding-box file that is a link stops the run, a crop replaces a link of
its name. The output folder may lie inside the input folder (it is then not taken as a class) but
may not be the input folder.

Memory is bounded by pixels, not by the number of images: a batch holds at most BATCH_SIZE images and
BATCH_PIXELS pixels (by the files' headers; a larger image is a batch alone), and batches are read
ahead only while the pixels in flight stay under IN_FLIGHT_PIXELS. Detection itself is bounded per
session call (align.detect_face).
"""
import fcntl
import multiprocessing
import os
import random
import re
import sys
from collections import deque, namedtuple
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
from PIL import Image

from facenet_tf.align import aligner
from facenet_tf import sharding
from facenet_tf.dataset import get_dataset, output_stems
from facenet_tf.errors import FaceNetError
from facenet_tf.files import TEMPORARY_RE, atomic_path
from facenet_tf.images import ImageReadError, image_size, read_rgb
from facenet_tf.progress import Progress
from facenet_tf.run_info import store_revision_info

BATCH_SIZE = 32
BATCH_PIXELS = 1 << 25        # 33.5 million pixels (32 one-megapixel photos) per batch
IN_FLIGHT_PIXELS = 96 << 20   # pixels of the batches being read or detected at once (two 48 MP photos)
WORKER_THREADS = 2  # reading + pyramids, writing crops
DETECT_THREADS = 2  # batches in detection at once
PNG_COMPRESSION = 1  # zlib level: 4x faster to write than the default 6, files ~10% larger

Job = namedtuple('Job', 'src base')  # input image path; output path without '.png'
# max_detect_side: 0 = detect on the full image (classic), N > 0 = on a copy reduced to N px;
# gpu_memory_fraction, allow_growth: the detector session's GPU memory (per process)
Options = namedtuple('Options', 'image_size margin detect_multiple_faces landmark_alignment max_detect_side '
                     'gpu_memory_fraction allow_growth', defaults=(0, None, False))
Result = namedtuple('Result', 'status lines message')  # status: aligned / noface / unreadable
# jobs to run; images done by earlier runs, skipped (a class that cannot be written, a name that
# cannot be a bounding-box line), in the whole input folder (all shards)
Plan = namedtuple('Plan', 'jobs done skipped input_images')


# ---------------------------------------------------------------------------------------------
# Files

def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder):
    """Delete temporary files left in `folder` by runs that are no longer alive."""
    for name in os.listdir(folder):
        m = TEMPORARY_RE.match(name)
        if m and not _pid_alive(int(m.group(1))):
            try:
                os.remove(os.path.join(folder, name))
            except OSError:
                pass


def write_png_atomic(path, img):
    """Save an RGB uint8 array as PNG at `path` through a temporary file and a rename (the rename
    replaces a symbolic link at `path` rather than writing through it; the temporary file is
    never opened through one either)."""
    with atomic_path(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o666)
        with open(fd, 'wb') as f:
            Image.fromarray(img).save(f, format='PNG', compress_level=PNG_COMPRESSION)


def _key(path):
    """(class folder, file name): how bounding-box files and jobs are matched across runs."""
    parts = os.path.normpath(path).split(os.sep)
    return tuple(parts[-2:])


_LINE_RE = re.compile(r'^(.*\.png)(?: -?\d+ -?\d+ -?\d+ -?\d+)?\n$', re.S)


def parse_line(line):
    """(output path, has a box) of one complete bounding-box line, None for anything else (paths
    may hold spaces)."""
    m = _LINE_RE.match(line)
    if not m:
        return None
    return m.group(1), m.end(1) < len(line) - 1


def _printable(text):
    """`text` with undecodable bytes of file names shown as escapes (stdout may be strict UTF-8)."""
    return text.encode('utf-8', 'backslashreplace').decode('utf-8')


def previous_runs(output_dir, classes=None):
    """(no face, listed): keys of the output paths that earlier runs' bounding-box files list alone
    (images without a face), and of every output path they list; only complete lines, only the
    class folders in `classes` when it is given."""
    no_face, listed = set(), set()
    if not os.path.isdir(output_dir):
        return no_face, listed
    for path in boxes_files(output_dir):
        with open(path, encoding='utf-8', errors='surrogateescape', newline='\n') as f:
            for line in f:
                parsed = parse_line(line)
                if parsed is None:
                    continue
                key = _key(parsed[0])
                if classes is not None and key[0] not in classes:
                    continue
                listed.add(key)
                if not parsed[1]:
                    no_face.add(key)
    return no_face, listed


def boxes_files(output_dir):
    """The bounding-box files (regular files only) of an output folder."""
    return [os.path.join(output_dir, name) for name in sorted(os.listdir(output_dir))
            if name.startswith('bounding_boxes_') and name.endswith('.txt')
            and os.path.isfile(os.path.join(output_dir, name))
            and not os.path.islink(os.path.join(output_dir, name))]


def repair_boxes_files(output_dir):
    """Cut the partial last line (a kill during a write) of every bounding-box file that no live
    run holds locked."""
    for path in boxes_files(output_dir):
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live run writes it
            except OSError:
                pass
            with open(fd, 'rb', closefd=False) as r:
                end = _end_of_last_line(r)
            if end != os.fstat(fd).st_size:
                os.ftruncate(fd, end)
        finally:
            os.close(fd)


def previous_no_face(output_dir):
    """Output paths that earlier runs' bounding-box files list alone (images without a face)."""
    return previous_runs(output_dir)[0]


def shard_boxes_name(shard):
    return 'bounding_boxes_shard_%d_of_%d.txt' % (shard.index, shard.count)


def open_shard_boxes(output_dir, shard):
    """The shard's bounding-box file opened for appending, locked against a second process of the
    same shard (where the file system has locks), with a partial last line (a kill during a write)
    cut off."""
    path = os.path.join(output_dir, shard_boxes_name(shard))
    f = _open_text(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise FaceNetError('shard %s is already running on %s (%s is locked)' % (shard, output_dir, path))
    except OSError:  # a file system without locks: run unguarded
        pass
    with open(path, 'rb') as r:
        content_end = _end_of_last_line(r)
    if content_end != os.path.getsize(path):
        os.truncate(path, content_end)
    return path, f


def _open_text(path, flags):
    """A bounding-box file opened for writing text; never through a symbolic link (an output is
    never written outside the output folder)."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW, 0o666)
    except OSError as e:
        if os.path.islink(path):
            raise FaceNetError('%s: is a symbolic link; the bounding-box file is not written through it' % path)
        raise e
    return open(fd, 'w', encoding='utf-8', errors='surrogateescape', newline='\n')


def _end_of_last_line(f, block=65536):
    """Offset just after the last newline of a binary file (0 when it has none)."""
    end = f.seek(0, os.SEEK_END)
    while end > 0:
        start = max(0, end - block)
        f.seek(start)
        data = f.read(end - start)
        pos = data.rfind(b'\n')
        if pos >= 0:
            return start + pos + 1
        end = start
    return 0


# ---------------------------------------------------------------------------------------------
# Planning

def is_done(job, multiple, no_face, listed=None):
    """Whether an earlier run completed this image (with `listed`, only if a bounding-box file
    lists its first crop)."""
    first = job.base + ('_0.png' if multiple else '.png')
    if _key(job.base + '.png') in no_face:
        return True
    return os.path.exists(first) and (listed is None or _key(first) in listed)


def check_output_dir(input_dir, output_dir):
    """FaceNetError when the output folder is a file, or is the input folder (crops would replace
    photos of the same name); called before anything is written."""
    if os.path.lexists(output_dir) and not os.path.isdir(output_dir):
        raise FaceNetError('%s: the output folder exists and is not a folder' % output_dir)
    out_real = os.path.realpath(output_dir)
    for one in input_dir.split(':'):
        if os.path.realpath(os.path.expanduser(one)) == out_real:
            raise FaceNetError('%s: the output folder is the input folder (crops could replace its '
                               'images); give another folder' % output_dir)


def _output_classes(dataset, output_dir, log):
    """The classes without the output folder itself when it lies in the input folder (its crops are
    never inputs)."""
    out_real = os.path.realpath(output_dir)
    kept = []
    for cls in dataset:
        folder = os.path.dirname(cls.image_paths[0]) if cls.image_paths else None
        if folder is not None and os.path.realpath(folder) == out_real:
            log('skipped class folder %s: it is the output folder' % _printable(folder))
            continue
        kept.append(cls)
    return kept


def _class_dir(output_dir, name):
    """The class's output folder, created; None (with the reason) when it exists as something that
    is not a real folder (a file, or a symbolic link that would take crops elsewhere)."""
    path = os.path.join(output_dir, name)
    if os.path.islink(path):
        return None, '%s: is a symbolic link; crops are not written through it' % path
    if os.path.lexists(path) and not os.path.isdir(path):
        return None, '%s: exists and is not a folder' % path
    os.makedirs(path, exist_ok=True)
    return path, None


def plan(input_dir, output_dir, multiple, random_order, shard=None, log=None):
    """A Plan: every image of every class (of the shard's classes when `shard` is given), output
    folders created; the images of a class whose output folder cannot be written are skipped with
    a note."""
    log = log or (lambda msg: None)
    dataset = _output_classes(get_dataset(input_dir), output_dir, log)
    input_images = sum(len(cls) for cls in dataset)
    if shard is not None:
        nrof_classes = len(dataset)
        dataset = sharding.select(dataset, shard)
        if log:
            log('Shard %s: %d of %d classes' % (shard, len(dataset), nrof_classes))
    if random_order:
        random.shuffle(dataset)
    repair_boxes_files(output_dir)
    no_face, listed = previous_runs(output_dir, {cls.name for cls in dataset})
    jobs, done, skipped = [], 0, 0
    for cls in dataset:
        if not cls.image_paths:
            continue
        class_dir, problem = _class_dir(output_dir, cls.name)
        if problem:
            log('skipped %d images of class %s: %s' % (len(cls.image_paths), _printable(cls.name),
                                                         _printable(problem)))
            skipped += len(cls.image_paths)
            continue
        remove_stale_temporaries(class_dir)
        stems = output_stems(cls.image_paths)
        paths = list(cls.image_paths)
        if random_order:
            random.shuffle(paths)
        for src in paths:
            if '\n' in src or '\r' in src:  # a bounding-box line could not name its crop
                log('unreadable: %r: a line break in the file name' % src)
                skipped += 1
                continue
            job = Job(src, os.path.join(class_dir, stems[src]))
            if is_done(job, multiple, no_face, listed):
                done += 1
            else:
                jobs.append(job)
    return Plan(jobs, done, skipped, input_images)


# ---------------------------------------------------------------------------------------------
# Aligning batches of images

def _faces_to_write(boxes, img_shape, multiple):
    if boxes.shape[0] == 0:
        return []
    if multiple:
        return list(range(boxes.shape[0]))
    return [aligner.choose_face(boxes, img_shape)]


def write_faces(job, img, boxes, points, opts):
    """Crop, save and describe the chosen faces of one image: a Result."""
    crops = []
    for index in _faces_to_write(boxes, img.shape, opts.detect_multiple_faces):
        if opts.landmark_alignment:
            face = aligner.align_face(img, points, index, opts.image_size)
            bb = aligner.margin_box(boxes[index], 0, img.shape)
        else:
            face, bb = aligner.crop_face(img, boxes[index], opts.image_size, opts.margin)
        if face is not None:
            crops.append((face, bb))
    if not crops:
        return Result('noface', [job.base + '.png'], 'no face: %s' % _printable(job.src))
    if opts.detect_multiple_faces:
        names = ['%s_%d.png' % (job.base, i) for i in range(len(crops))]
    else:
        names = [job.base + '.png']
    for name, (face, _) in reversed(list(zip(names, crops))):
        write_png_atomic(name, face)
    lines = ['%s %d %d %d %d' % (name, bb[0], bb[1], bb[2], bb[3]) for name, (_, bb) in zip(names, crops)]
    return Result('aligned', lines, None)


class BatchAligner(object):
    """Aligns batches of images: decoding and pyramids run ahead in threads, detection is one
    batched call per batch, and crops are written in threads while the next batch is detected."""

    def __init__(self, opts, threads=None):
        from facenet_tf.align.detect_face import MTCNN
        self.opts = opts
        self.detector = MTCNN(threads=threads, gpu_memory_fraction=opts.gpu_memory_fraction,
                              allow_growth=opts.allow_growth)
        self.pool = ThreadPoolExecutor(WORKER_THREADS)

    def _load(self, job):
        """(image, prepared detector input, None) or (None, None, reason)."""
        try:
            img = read_rgb(job.src)
        except ImageReadError as e:
            return None, None, str(e)
        except MemoryError:
            return None, None, 'out of memory while decoding'
        return img, aligner.prepare(self.detector, img, self.opts.max_detect_side), None

    def read(self, jobs):
        """Futures of the decoded images of `jobs`."""
        return [self.pool.submit(self._load, job) for job in jobs]

    def align(self, jobs, reads):
        """Futures of the Results of `jobs`, given their read futures."""
        loaded = [f.result() for f in reads]
        ok = [i for i, (img, _, _) in enumerate(loaded) if img is not None]
        found = dict(zip(ok, aligner.detect_prepared(self.detector, [loaded[i][1] for i in ok])))
        futures = []
        for i, (job, (img, _, error)) in enumerate(zip(jobs, loaded)):
            if img is None:
                note = 'unreadable: %s: %s' % (_printable(job.src), error)
                futures.append(_done(Result('unreadable', [], note)))
            else:
                futures.append(self.pool.submit(write_faces, job, img, found[i][0], found[i][1], self.opts))
        return futures

    def align_now(self, jobs, reads):
        """Results of `jobs` (detected, crops written)."""
        return [f.result() for f in self.align(jobs, reads)]

    def run(self, jobs, batch_size=BATCH_SIZE, batch_pixels=BATCH_PIXELS, in_flight_pixels=IN_FLIGHT_PIXELS):
        """Yield result lists in batch order. DETECT_THREADS batches are detected at once (the
        session runs concurrent calls; Python steps of one overlap network time of the other)
        while the following batches are read ahead, as long as the pixels of the batches in flight
        stay under `in_flight_pixels` (one batch is always let through)."""
        in_flight = deque()
        with ThreadPoolExecutor(DETECT_THREADS) as detect_pool:
            for batch, pixels in batches(jobs, batch_size, batch_pixels):
                while in_flight and (len(in_flight) > DETECT_THREADS or
                                     sum(n for _, n in in_flight) + pixels > in_flight_pixels):
                    yield in_flight.popleft()[0].result()
                in_flight.append((detect_pool.submit(self.align_now, batch, self.read(batch)), pixels))
            while in_flight:
                yield in_flight.popleft()[0].result()

    def close(self):
        self.pool.shutdown()
        self.detector.close()


def batches(jobs, batch_size=BATCH_SIZE, batch_pixels=BATCH_PIXELS):
    """Yield (jobs, pixels): consecutive jobs, at most `batch_size` of them and `batch_pixels` pixels
    by their files' headers (an image larger than that is a batch alone)."""
    batch, pixels = [], 0
    for job in jobs:
        size = image_size(job.src)
        n = size[0] * size[1] if size else 0
        if batch and (len(batch) == batch_size or pixels + n > batch_pixels):
            yield batch, pixels
            batch, pixels = [], 0
        batch.append(job)
        pixels += n
    if batch:
        yield batch, pixels


def _done(value):
    future = Future()
    future.set_result(value)
    return future


_WORKER = {}


def _worker_init(opts, threads):
    _WORKER['aligner'] = BatchAligner(opts, threads)


def _worker_align(jobs):
    batch_aligner = _WORKER['aligner']
    return batch_aligner.align_now(jobs, batch_aligner.read(jobs))


def _results(jobs, opts, num_workers):
    """Result lists in batches, from this process or from `num_workers` processes."""
    if num_workers <= 1:
        batch_aligner = BatchAligner(opts)
        try:
            for results in batch_aligner.run(jobs):
                yield results
        finally:
            batch_aligner.close()
        return
    from facenet_tf.align.detect_face import cpu_count
    threads = max(1, cpu_count() // num_workers)
    ctx = multiprocessing.get_context('spawn')
    with ctx.Pool(num_workers, initializer=_worker_init, initargs=(opts, threads)) as pool:
        for results in pool.imap(_worker_align, (batch for batch, _ in batches(jobs))):
            yield results


# ---------------------------------------------------------------------------------------------
# The whole run

def _open_boxes(output_dir, shard):
    """(path, open file) of this run's bounding-box file: a shard's own file, or a new file (never
    one that exists), locked while the run writes it."""
    if shard is not None:
        return open_shard_boxes(output_dir, shard)
    while True:
        path = os.path.join(output_dir, 'bounding_boxes_%05d.txt' % np.random.randint(0, high=99999))
        try:
            f = _open_text(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        except FileExistsError:
            continue
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            pass
        return path, f


def align_dataset(input_dir, output_dir, opts, random_order=False, num_workers=1, arg_string='',
                  log=None, shard=None):
    """Align every image of `input_dir` (the classes of `shard` only, when given) into
    `output_dir`; returns the counts of the run (a dict). A shard locks its bounding-box file
    before it looks at the output folder."""
    log = log or (lambda msg: print(msg, flush=True))
    output_dir = os.path.expanduser(output_dir)
    check_output_dir(input_dir, output_dir)
    os.makedirs(output_dir, exist_ok=True)
    bb_path, bb_file = _open_boxes(output_dir, shard) if shard is not None else (None, None)
    try:
        store_revision_info(None, output_dir, arg_string)
        jobs, done, skipped, input_images = plan(input_dir, output_dir, opts.detect_multiple_faces, random_order,
                                                 shard, log)
        counts = {'total': len(jobs) + done + skipped, 'already_done': done, 'aligned': 0, 'faces': 0,
                  'no_face': 0, 'unreadable': skipped, 'input_images': input_images}
        if done:
            log('%d of %d images already aligned by an earlier run: skipped' % (done, counts['total']))
        if not jobs:
            return counts
        progress = Progress(len(jobs), 'align', 'img')
        for results in _results(jobs, opts, num_workers):
            if bb_file is None:  # opened once the detector has loaded and a batch is done
                bb_path, bb_file = _open_boxes(output_dir, None)
            text = []
            for result in results:
                if result.message:
                    log(result.message)
                text += [line + '\n' for line in result.lines]
                if result.status == 'aligned':
                    counts['aligned'] += 1
                    counts['faces'] += len(result.lines)
                elif result.status == 'noface':
                    counts['no_face'] += 1
                else:
                    counts['unreadable'] += 1
            bb_file.write(''.join(text))  # a batch's lines in one write: a kill leaves whole lines
            bb_file.flush()
            progress.update(len(results))
    finally:
        if bb_file is not None:
            bb_file.close()
    sys.stderr.write(progress.summary() + '\n')
    counts['bounding_boxes'] = bb_path
    return counts


def summary_line(counts):
    return ('Total number of images: %d, successfully aligned: %d (%d faces written), no face: %d, '
            'unreadable: %d, already done: %d' % (
                counts['total'], counts['aligned'], counts['faces'], counts['no_face'],
                counts['unreadable'], counts['already_done']))


def nothing_aligned(counts):
    """Why a run produced nothing (no image found, none readable, no face in any), or None when it
    aligned a face, found every image done by earlier runs, or is a shard whose classes are empty
    while other shards have images."""
    if counts['aligned'] or counts['already_done'] or (counts['total'] == 0 and counts.get('input_images')):
        return None
    if counts['total'] == 0:
        return 'No images found'
    if counts['unreadable'] == counts['total']:
        return 'No readable image among %d' % counts['total']
    return 'No face found in any of %d images' % counts['total']
