"""Exporting the embeddings of every image of an aligned dataset (or of one shard of its classes)
to an embeddings file (facenet_tf.embeddings_file), in resumable chunks.

Each class's images are cut into batches of their own (batch_size images, the last one fewer), and
the batches are grouped into chunks of at least chunk_size images. Each complete chunk is saved
before the next starts, so a killed run loses at most one chunk and a new run with the same inputs
and settings starts after the last complete one. On CPU an image's embedding can differ in its last
bits with its position in the batch and the batch's size; since no batch spans two classes, an image
is embedded in the same batch whether its class is exported alone, in a shard or in a whole run, and
the shard files of an export merge into exactly the file of one run (on the same kind of CPU and
thread count). The cost is a short batch per class: small on datasets of tens to hundreds of images
per class. An image that cannot be decoded gets one `unreadable:` line and is left out of the file.
"""
import hashlib
import io
import itertools
import os
import sys
from collections import namedtuple

import numpy as np

from facenet_tf import embeddings_file, sharding
from facenet_tf.dataset import get_image_paths, note_skipped
from facenet_tf.errors import FaceNetError
from facenet_tf.progress import Progress

Settings = namedtuple('Settings', 'image_size batch_size use_fixed_image_standardization use_flipped_images '
                                  'precision')
DEFAULT_CHUNK_SIZE = 1000


def list_images(data_dir, shard=None, skipped=None):
    """(class_names: every class folder, sorted; relative paths and labels of the images of the
    shard's classes, in dataset order). Only the shard's class folders are listed; files that are
    not images are appended to `skipped`."""
    if not os.path.isdir(data_dir):
        raise FaceNetError('dataset folder not found: %s' % data_dir)
    class_names = sorted(c for c in os.listdir(data_dir)
                         if not c.startswith('.') and os.path.isdir(os.path.join(data_dir, c)))
    if not class_names:
        raise FaceNetError('no class folders in %s (expected one sub-folder of aligned images per person)'
                           % data_dir)
    paths, labels = [], []
    mine = set(sharding.select(class_names, shard, name=str))
    for label, name in enumerate(class_names):
        if name in mine:
            for path in get_image_paths(os.path.join(data_dir, name), skipped):
                paths.append(os.path.relpath(path, data_dir))
                labels.append(label)
    return class_names, paths, labels


def plan_chunks(labels, batch_size, chunk_size):
    """Chunks as lists of batch sizes: each class's images in batches of batch_size (the last one
    fewer), consecutive batches grouped until a chunk holds at least chunk_size images."""
    batches = []
    for _, run in itertools.groupby(labels):
        n = len(list(run))
        batches += [min(batch_size, n - start) for start in range(0, n, batch_size)]
    chunks, current = [], []
    for size in batches:
        current.append(size)
        if sum(current) >= chunk_size:
            chunks.append(current)
            current = []
    return chunks + ([current] if current else [])


def shard_output(output, shard):
    """The file a shard writes: `out.h5` -> `out.shard_<i>_of_<n>.h5`."""
    if shard is None:
        return output
    stem, ext = os.path.splitext(output)
    return '%s.shard_%d_of_%d%s' % (stem, shard.index, shard.count, ext or '.h5')


def model_name(model):
    """A model's name: its folder's name, or the .pb file's name without the extension."""
    base = os.path.basename(os.path.normpath(model))
    return base[:-3] if base.endswith('.pb') else base


def model_identity(model):
    """What the embeddings depend on in the model file(s): the sha256 of a .pb; for a checkpoint
    folder, the sha256 of its graph (.meta), `checkpoint` and index files (an index holds a checksum of
    every weight) and the names and sizes of its other files. A resumed run with another identity
    starts again instead of mixing rows of two models."""
    model = os.path.abspath(os.path.expanduser(model))
    files = [model] if os.path.isfile(model) else sorted(
        os.path.join(model, n) for n in os.listdir(model) if os.path.isfile(os.path.join(model, n)))
    identity = []
    for path in files:
        name = os.path.basename(path)
        if path == model or name == 'checkpoint' or name.endswith(('.meta', '.index', '.pb')):
            digest = hashlib.sha256()
            with open(path, 'rb') as f:
                for block in iter(lambda: f.read(1 << 20), b''):
                    digest.update(block)
            identity.append('%s sha256 %s' % (name, digest.hexdigest()))
        else:
            identity.append('%s %d bytes' % (name, os.path.getsize(path)))
    return identity


class _ChunkEmbedder(object):
    """Embeds the images of a chunk; images that cannot be decoded are found one by one, noted and
    left out."""

    def __init__(self, sess, data_dir, settings, log):
        self.sess, self.data_dir, self.settings, self.log = sess, data_dir, settings, log
        self._checker = None

    def _embed(self, paths, batches):
        from facenet_tf.embedding import embed
        s = self.settings
        return embed(self.sess, [os.path.join(self.data_dir, p) for p in paths], image_size=s.image_size,
                     batch_size=s.batch_size, fixed_standardization=s.use_fixed_image_standardization,
                     use_flipped_images=s.use_flipped_images, stream=io.StringIO(), groups=batches)

    def _readable(self, path):
        from facenet_tf.embedding import ImageBatches
        if self._checker is None:
            self._checker = ImageBatches(self.settings.image_size, 1, parallel_calls=0)
        try:
            self._checker.decode([os.path.join(self.data_dir, path)])
        except FaceNetError as e:
            self.log('unreadable: %s' % str(e).replace('cannot read image ', '', 1))
            return False
        return True

    def __call__(self, paths, batches):
        """(ok flags, embeddings of the readable images) of a chunk: `paths` in batches of the
        given sizes (a batch without its unreadable images stays a batch of its own)."""
        try:
            return [True] * len(paths), self._embed(paths, batches)
        except FaceNetError:
            ok = [self._readable(p) for p in paths]
            ends = list(itertools.accumulate(batches))
            kept = [sum(ok[end - size:end]) for end, size in zip(ends, batches)]
            return ok, self._embed([p for p, good in zip(paths, ok) if good], kept)

    def close(self):
        if self._checker is not None:
            self._checker.close()


def export(model, data_dir, output, settings, shard=None, chunk_size=DEFAULT_CHUNK_SIZE, log=print,
           session_args=None):
    """Write the embeddings file of `data_dir` (the shard's classes when given) to `output` (the
    shard's name for it, see shard_output). `session_args`: a tool's parsed inference flags (GPU
    memory; see tf_setup.inference_session), not part of the file's settings. Returns the counts of
    the run (a dict)."""
    data_dir = os.path.abspath(os.path.expanduser(data_dir))
    output = shard_output(os.path.abspath(os.path.expanduser(output)), shard)
    if not os.path.isdir(os.path.dirname(output)):
        raise FaceNetError('folder of the output file not found: %s' % os.path.dirname(output))
    skipped = []
    class_names, paths, labels = list_images(data_dir, shard, skipped)
    note_skipped(skipped, lambda line: sys.stderr.write(line + '\n'))
    if not paths and shard is None:
        raise FaceNetError('no images in %s (expected one sub-folder of aligned images per person)' % data_dir)
    counts = {'output': output, 'total': len(paths), 'embedded': 0, 'unreadable': 0, 'resumed_images': 0,
              'computed_images': 0}
    if shard is not None:
        log('Shard %s: %d of %d classes, %d images' % (shard, len(set(labels)), len(class_names), len(paths)))
    if os.path.exists(output):
        log('%s exists already: nothing to do (delete it to export again)' % output)
        counts['embedded'] = len(embeddings_file.read(output).paths)
        return counts
    chunks = plan_chunks(labels, settings.batch_size, chunk_size)
    attrs = dict(settings._asdict(), model=model_name(model), data_dir=data_dir,
                 shard='' if shard is None else str(shard))
    partial = embeddings_file.PartialRun(output, {'paths': paths, 'labels': labels, 'class_names': class_names,
                                                  'attrs': attrs, 'chunks': chunks, 'model': model_identity(model),
                                                  'backend': getattr(session_args, 'backend', None) or 'tf'})
    if partial.discarded:
        log('An earlier unfinished run of %s had other inputs, settings or model file: starting again' % output)
    sizes = [sum(c) for c in chunks]
    start = partial.complete(sizes)
    if start:
        counts['resumed_images'] = sum(sum(c) for c in chunks[:start])
        log('Resumed at chunk %d of %d (%d of %d images embedded by an earlier run)'
            % (start, len(chunks), counts['resumed_images'], len(paths)))
    if start < len(chunks):
        try:
            _compute(model, data_dir, paths, settings, partial, chunks, start, counts, log, session_args)
        except FaceNetError:
            if not start and not counts['computed_images']:  # e.g. a model that does not load
                partial.remove()
            raise
    ok, rows, dim = [], [], None
    for i, size in enumerate(sizes):
        chunk_ok, chunk_rows = partial.load(i, size, dim)
        ok += list(chunk_ok)
        if len(chunk_rows):
            rows.append(chunk_rows)
            dim = chunk_rows.shape[1]
    keep = [i for i, good in enumerate(ok) if good]
    embeddings = np.concatenate(rows) if rows else np.zeros((0, 0), np.float32)
    embeddings_file.write(output, embeddings_file.Embeddings(
        embeddings, np.asarray(labels, np.int64)[keep], [paths[i] for i in keep], class_names, attrs))
    partial.remove()
    counts['embedded'] = len(keep)
    counts['unreadable'] = len(paths) - len(keep)
    return counts


def _compute(model, data_dir, paths, settings, partial, chunks, start, counts, log, session_args=None):
    """Embed the chunks from `start` on and save each as it completes."""
    from facenet_tf import tf_setup
    tf_setup.configure()
    from facenet_tf.runtimes import open_model
    progress = Progress(len(paths) - counts['resumed_images'], 'export', 'img')
    with open_model(model, session_args, precision=settings.precision, image_size=settings.image_size) as sess:
        embedder = _ChunkEmbedder(sess, data_dir, settings, log)
        try:
            offset = counts['resumed_images']
            for i in range(start, len(chunks)):
                part = paths[offset:offset + sum(chunks[i])]
                offset += len(part)
                ok, rows = embedder(part, chunks[i])
                partial.save(i, ok, rows)
                counts['computed_images'] += len(part)
                progress.update(len(part))
        finally:
            embedder.close()
    log(progress.summary())


def summary_line(counts):
    return ('Exported %d embeddings of %d images to %s (unreadable: %d; computed now: %d, by an earlier run: %d)'
            % (counts['embedded'], counts['total'], counts['output'], counts['unreadable'],
               counts['computed_images'], counts['resumed_images']))
