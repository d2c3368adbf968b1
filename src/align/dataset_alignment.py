"""Aligning a dataset folder with MTCNN: the classic outputs, robust to bad input, resumable, batched.

Layout (as the classic tool): one output folder per class, `<stem>.png` crops (`<stem>_<i>.png` for
every face with multiple faces), `bounding_boxes_<random>.txt` with one `path x1 y1 x2 y2` line per
crop (the output path alone when no face was found) and `revision_info.txt`.

Every file is written under a temporary name and renamed, so an interrupted run leaves no partial
PNG; a later run skips images whose outputs exist (with multiple faces `_0` is renamed last, so it
marks a complete image) and images an earlier bounding-box file lists as having no face.

A shard (facenet_tf.sharding) aligns only its classes and appends to its own
`bounding_boxes_shard_<i>_of_<n>.txt` (locked while it runs). In a shard an image counts as done only
when a bounding-box file also lists it, so a shard killed between writing a crop and its line redoes
that image (same pixels, written again) and the shard files together always list every crop once.
"""
import fcntl
import multiprocessing
import os
import random
import sys
from collections import deque, namedtuple
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
from PIL import Image

from align import aligner
from facenet_tf import sharding
from facenet_tf.dataset import get_dataset
from facenet_tf.errors import FaceNetError
from facenet_tf.files import TEMPORARY_RE, atomic_path
from facenet_tf.images import ImageReadError, read_rgb
from facenet_tf.progress import Progress
from facenet_tf.run_info import store_revision_info

BATCH_SIZE = 32
WORKER_THREADS = 2  # reading + pyramids, writing crops
DETECT_THREADS = 2  # batches in detection at once
PNG_COMPRESSION = 1  # zlib level: 4x faster to write than the default 6, files ~10% larger

Job = namedtuple('Job', 'src base')  # input image path; output path without '.png'
# max_detect_side: 0 = detect on the full image (classic), N > 0 = on a copy reduced to N px;
# gpu_memory_fraction, allow_growth: the detector session's GPU memory (per process)
Options = namedtuple('Options', 'image_size margin detect_multiple_faces landmark_alignment max_detect_side '
                     'gpu_memory_fraction allow_growth', defaults=(0, None, False))
Result = namedtuple('Result', 'status lines message')  # status: aligned / noface / unreadable


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
    """Save an RGB uint8 array as PNG at `path` through a temporary file and a rename."""
    with atomic_path(path) as tmp:
        Image.fromarray(img).save(tmp, format='PNG', compress_level=PNG_COMPRESSION)


def _key(path):
    """(class folder, file name): how bounding-box files and jobs are matched across runs."""
    parts = os.path.normpath(path).split(os.sep)
    return tuple(parts[-2:])


def previous_runs(output_dir, classes=None):
    """(no face, listed): keys of the output paths that earlier runs' bounding-box files list alone
    (images without a face), and of every output path they list; only complete lines, only the
    class folders in `classes` when it is given."""
    no_face, listed = set(), set()
    if not os.path.isdir(output_dir):
        return no_face, listed
    for name in os.listdir(output_dir):
        if name.startswith('bounding_boxes_') and name.endswith('.txt'):
            with open(os.path.join(output_dir, name), errors='replace') as f:
                for line in f:
                    parts = line.split()
                    if not parts or not parts[0].endswith('.png') or not line.endswith('\n'):
                        continue
                    key = _key(parts[0])
                    if classes is not None and key[0] not in classes:
                        continue
                    listed.add(key)
                    if len(parts) == 1:
                        no_face.add(key)
    return no_face, listed


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
    f = open(path, 'a')
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


def plan(input_dir, output_dir, multiple, random_order, shard=None, log=None):
    """(jobs to run, number already done): every image of every class (of the shard's classes when
    `shard` is given), output folders created."""
    dataset = get_dataset(input_dir)
    if shard is not None:
        nrof_classes = len(dataset)
        dataset = sharding.select(dataset, shard)
        if log:
            log('Shard %s: %d of %d classes' % (shard, len(dataset), nrof_classes))
    if random_order:
        random.shuffle(dataset)
    no_face, listed = previous_runs(output_dir, None if shard is None else {cls.name for cls in dataset})
    if shard is None:
        listed = None
    jobs, done = [], 0
    for cls in dataset:
        class_dir = os.path.join(output_dir, cls.name)
        os.makedirs(class_dir, exist_ok=True)
        remove_stale_temporaries(class_dir)
        paths = list(cls.image_paths)
        if random_order:
            random.shuffle(paths)
        for src in paths:
            job = Job(src, os.path.join(class_dir, os.path.splitext(os.path.basename(src))[0]))
            if is_done(job, multiple, no_face, listed):
                done += 1
            else:
                jobs.append(job)
    return jobs, done


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
        return Result('noface', [job.base + '.png'], 'no face: %s' % job.src)
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
        from align.detect_face import MTCNN
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
                futures.append(_done(Result('unreadable', [], 'unreadable: %s: %s' % (job.src, error))))
            else:
                futures.append(self.pool.submit(write_faces, job, img, found[i][0], found[i][1], self.opts))
        return futures

    def align_now(self, jobs, reads):
        """Results of `jobs` (detected, crops written)."""
        return [f.result() for f in self.align(jobs, reads)]

    def run(self, jobs, batch_size=BATCH_SIZE):
        """Yield result lists in batch order. DETECT_THREADS batches are detected at once (the
        session runs concurrent calls; Python steps of one overlap network time of the other)
        while the following batches are read ahead."""
        batches = [jobs[i:i + batch_size] for i in range(0, len(jobs), batch_size)]
        in_flight = deque()
        with ThreadPoolExecutor(DETECT_THREADS) as detect_pool:
            for batch in batches:
                in_flight.append(detect_pool.submit(self.align_now, batch, self.read(batch)))
                if len(in_flight) > DETECT_THREADS:
                    yield in_flight.popleft().result()
            while in_flight:
                yield in_flight.popleft().result()

    def close(self):
        self.pool.shutdown()
        self.detector.close()


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
    from align.detect_face import cpu_count
    threads = max(1, cpu_count() // num_workers)
    batches = [jobs[i:i + BATCH_SIZE] for i in range(0, len(jobs), BATCH_SIZE)]
    ctx = multiprocessing.get_context('spawn')
    with ctx.Pool(num_workers, initializer=_worker_init, initargs=(opts, threads)) as pool:
        for results in pool.imap(_worker_align, batches):
            yield results


# ---------------------------------------------------------------------------------------------
# The whole run

def _open_boxes(output_dir, shard):
    """(path, open file) of this run's bounding-box file."""
    if shard is not None:
        return open_shard_boxes(output_dir, shard)
    path = os.path.join(output_dir, 'bounding_boxes_%05d.txt' % np.random.randint(0, high=99999))
    return path, open(path, 'w')


def align_dataset(input_dir, output_dir, opts, random_order=False, num_workers=1, arg_string='',
                  log=None, shard=None):
    """Align every image of `input_dir` (the classes of `shard` only, when given) into
    `output_dir`; returns the counts of the run (a dict). A shard locks its bounding-box file
    before it looks at the output folder."""
    log = log or (lambda msg: print(msg, flush=True))
    output_dir = os.path.expanduser(output_dir)
    os.makedirs(output_dir, exist_ok=True)
    bb_path, bb_file = _open_boxes(output_dir, shard) if shard is not None else (None, None)
    try:
        store_revision_info(None, output_dir, arg_string)
        jobs, done = plan(input_dir, output_dir, opts.detect_multiple_faces, random_order, shard, log)
        counts = {'total': len(jobs) + done, 'already_done': done, 'aligned': 0, 'faces': 0,
                  'no_face': 0, 'unreadable': 0}
        if done:
            log('%d of %d images already aligned by an earlier run: skipped' % (done, counts['total']))
        if not jobs:
            return counts
        if bb_file is None:
            bb_path, bb_file = _open_boxes(output_dir, None)
        progress = Progress(len(jobs), 'align', 'img')
        for results in _results(jobs, opts, num_workers):
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
