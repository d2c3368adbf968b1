"""Splitting a dataset's classes over COUNT independent processes (cluster array tasks).

A shard is `INDEX/COUNT` with 0 <= INDEX < COUNT. Class `name` belongs to shard
`int(sha1(name as UTF-8)[:8]) % COUNT`: the choice depends on the class name alone, so it is the
same on every machine, Python version and PYTHONHASHSEED (not `hash()`), does not depend on the order
or the completeness of a directory listing of a shared file system seen by tasks started at different
moments, and a class keeps its shard when classes are added. Round-robin over the sorted classes
would balance the counts of classes exactly, but a class's shard would then depend on every other
class: two tasks that list the folder at different moments could both skip a class or both take it.
With thousands of classes the hash balances within a few per cent (docs/cluster_jobs.md).

The index may come from the scheduler instead of a flag: Slurm job arrays
(`SLURM_ARRAY_TASK_ID`, with `SLURM_ARRAY_TASK_MIN`/`_STEP`/`_COUNT`) and Kubernetes Indexed Jobs
(`JOB_COMPLETION_INDEX`, the count given by a flag).
"""
import argparse
import hashlib
import os
from collections import namedtuple

from facenet_tf.cli import positive_int
from facenet_tf.errors import FaceNetError



class Shard(namedtuple('Shard', 'index count')):
    """Shard `index` of `count` (0-based)."""
    __slots__ = ()

    def __str__(self):
        return '%d/%d' % (self.index, self.count)


def _check(index, count, source):
    if count < 1:
        raise ValueError('%s: the shard count must be at least 1, got %d' % (source, count))
    if not 0 <= index < count:
        raise ValueError('%s: the shard index must be between 0 and %d (count %d), got %d'
                         % (source, count - 1, count, index))
    return Shard(index, count)


def parse_shard(text):
    """An argparse type: `INDEX/COUNT` (0-based index) as a Shard."""
    parts = str(text).split('/')
    try:
        index, count = (int(p) for p in parts) if len(parts) == 2 else (None, None)
    except ValueError:
        index = None
    if index is None:
        raise argparse.ArgumentTypeError('expected INDEX/COUNT such as 0/10, got %r' % text)
    try:
        return _check(index, count, 'shard %s' % text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).split(': ', 1)[1])


def add_shard_arguments(parser):
    """--shard INDEX/COUNT and --shard_count (with an index from the scheduler's environment)."""
    parser.add_argument('--shard', type=parse_shard, default=None, metavar='INDEX/COUNT',
                        help='Process only the classes of shard INDEX of COUNT (0-based). Without it the '
                             'index is read from SLURM_ARRAY_TASK_ID (count SLURM_ARRAY_TASK_COUNT) or '
                             'JOB_COMPLETION_INDEX (count from --shard_count); 0/1 = everything.')
    parser.add_argument('--shard_count', type=positive_int, default=None,
                        help='Number of shards when the index comes from the environment (required with '
                             'JOB_COMPLETION_INDEX; overrides SLURM_ARRAY_TASK_COUNT).')


def _env_int(environ, name):
    value = environ.get(name)
    if value is None or value == '':
        return None
    try:
        return int(value)
    except ValueError:
        raise FaceNetError('%s is not an integer: %r' % (name, value))


def from_environment(shard_count=None, environ=None):
    """(Shard, source) from the scheduler's variables, or (None, None) when none is set."""
    environ = os.environ if environ is None else environ
    task_id = _env_int(environ, 'SLURM_ARRAY_TASK_ID')
    if task_id is not None:
        first = _env_int(environ, 'SLURM_ARRAY_TASK_MIN') or 0
        step = _env_int(environ, 'SLURM_ARRAY_TASK_STEP') or 1
        count = shard_count or _env_int(environ, 'SLURM_ARRAY_TASK_COUNT')
        if count is None:
            raise FaceNetError('SLURM_ARRAY_TASK_ID is set but not SLURM_ARRAY_TASK_COUNT: give --shard_count')
        return (task_id - first) // step, count, 'SLURM_ARRAY_TASK_ID'
    index = _env_int(environ, 'JOB_COMPLETION_INDEX')
    if index is not None:
        if shard_count is None:
            raise FaceNetError('JOB_COMPLETION_INDEX is set: give the number of shards with --shard_count '
                               '(or --shard 0/1 to process everything)')
        return index, shard_count, 'JOB_COMPLETION_INDEX'
    return None, None, None


def resolve(shard=None, shard_count=None, environ=None):
    """(Shard or None, where it came from): the --shard flag, else the environment; None means
    the whole dataset. A bad index or count is a FaceNetError naming its source."""
    if shard is not None:
        return (shard if shard.count > 1 else None), '--shard'
    index, count, source = from_environment(shard_count, environ)
    if source is None:
        if shard_count is not None:
            raise FaceNetError('--shard_count needs an index: give --shard INDEX/COUNT, or run as a Slurm '
                               'array task or Kubernetes Indexed Job')
        return None, None
    try:
        shard = _check(index, count, source)
    except ValueError as e:
        raise FaceNetError(str(e))
    return (shard if shard.count > 1 else None), source


def shard_of(name, count):
    """The shard (0..count-1) of the class called `name`."""
    digest = hashlib.sha1(name.encode('utf-8')).digest()
    return int.from_bytes(digest[:8], 'big') % count


def select(classes, shard, name=lambda c: c.name):
    """The classes of `shard` (all of them when shard is None), in their order."""
    if shard is None:
        return list(classes)
    return [c for c in classes if shard_of(name(c), shard.count) == shard.index]
