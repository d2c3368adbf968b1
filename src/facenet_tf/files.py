"""Writing a file atomically: under a temporary name in the same folder, renamed into place
(`os.replace`) only when it is complete, so an interrupted run never leaves a partial output.

Tools never replace a file or folder they did not create in the run: `check_new_output` refuses an
existing output unless the user passed the tool's `--overwrite` flag (`add_overwrite_argument`).

The temporary name is `.<name>.<pid>.tmp` beside the target: hidden, unique per process, and
recognisable by `TEMPORARY_RE` so a later run can delete what a killed run left behind.
"""
import contextlib
import os
import re

from facenet_tf.errors import FaceNetError

TEMPORARY_RE = re.compile(r'^\..+\.(\d+)\.tmp$')  # group 1: the writing process's id


def temporary_name(path):
    """The temporary file name under which `path` is written."""
    folder, name = os.path.split(path)
    return os.path.join(folder, '.%s.%d.tmp' % (name, os.getpid()))


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path to write; when the block ends normally it is renamed to `path`,
    otherwise it is deleted (and `path` is left as it was)."""
    tmp = temporary_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def atomic_open(path, mode='w'):
    """Like open(path, mode) for writing, through atomic_path."""
    with atomic_path(path) as tmp:
        with open(tmp, mode) as f:
            yield f


def write_atomic(path, data):
    """Write `data` (str or bytes) to `path` atomically."""
    with atomic_open(path, 'wb' if isinstance(data, (bytes, bytearray)) else 'w') as f:
        f.write(data)


OVERWRITE_FLAG = '--overwrite'


def check_new_output(path, overwrite=False, flag=OVERWRITE_FLAG):
    """Refuse (FaceNetError) to replace an existing `path` unless `overwrite`; call it before any work
    so a refused run has changed nothing."""
    if os.path.lexists(path) and not overwrite:
        kind = 'folder' if os.path.isdir(path) else 'file'
        raise FaceNetError('%s: the output %s exists already and was not made by this run '
                           '(%s replaces it)' % (path, kind, flag))
    return path


def require_regular_file(path, hint=''):
    """Refuse (FaceNetError) a path that is not a regular file (a FIFO, device or folder would block
    or mislead a reader); `hint` says what the file should be."""
    if not os.path.isfile(path):
        raise FaceNetError('%s: not a regular file%s' % (path, ' (%s)' % hint if hint else ''))
    return path


def add_overwrite_argument(parser, what='the output file'):
    """The `--overwrite` flag of the tools that write one output file or folder."""
    parser.add_argument(OVERWRITE_FLAG, action='store_true',
                        help='Replace %s when it exists already (otherwise the run stops before any work).' % what)
