"""Planning and resuming a dataset alignment run (facenet_tf.align.dataset_alignment): which images
are left to do, read from the bounding-box files of earlier runs (complete lines only; a partial last
line of a file no live run holds is cut), the class output folders (never a symbolic link), a shard's
own locked bounding-box file, and temporary files of dead runs removed."""
import fcntl
import os
import random
import re
import sys
from collections import namedtuple

import numpy as np

from facenet_tf import sharding
from facenet_tf.dataset import get_dataset, note_skipped, output_stems
from facenet_tf.errors import FaceNetError
from facenet_tf.files import TEMPORARY_RE

Job = namedtuple('Job', 'src base')  # input image path; output path without '.png'
# jobs to run; images done by earlier runs, skipped (a class that cannot be written, a name that
# cannot be a bounding-box line), in the whole input folder (all shards)
Plan = namedtuple('Plan', 'jobs done skipped input_images')


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


def printable(text):
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
    f = open_text(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
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


def open_text(path, flags):
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
            log('skipped class folder %s: it is the output folder' % printable(folder))
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
    a note; files that are not images get a note each on stderr."""
    log = log or (lambda msg: None)
    not_images = []
    dataset = _output_classes(get_dataset(input_dir, skipped=not_images), output_dir, log)
    note_skipped(not_images, lambda line: sys.stderr.write(line + '\n'))
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
            log('skipped %d images of class %s: %s' % (len(cls.image_paths), printable(cls.name),
                                                         printable(problem)))
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


def open_boxes(output_dir, shard):
    """(path, open file) of this run's bounding-box file: a shard's own file, or a new file (never
    one that exists), locked while the run writes it."""
    if shard is not None:
        return open_shard_boxes(output_dir, shard)
    while True:
        path = os.path.join(output_dir, 'bounding_boxes_%05d.txt' % np.random.randint(0, high=99999))
        try:
            f = open_text(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        except FileExistsError:
            continue
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            pass
        return path, f
