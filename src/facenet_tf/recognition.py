"""Naming the faces of photos, video files and cameras (recognize.py): the run loop.

`run` reads the frames of every source (facenet_tf.sources), passes the frames to work on to the
face service `FacePipeline` (facenet_tf.faces: one MTCNN call per batch of frames, crops as the
aligner makes them, embeddings in batches), names the faces (facenet_tf.gallery: a gallery folder or
a classifier file), and emits `face_record` (one JSON-ready dict a face), the annotated frames
(facenet_tf.annotate) and the counts of `RunStats` (live rate line and summary, with the time spent
in detection and embedding). `add_face_arguments` holds the flags recognize.py and cluster.py share.
"""
import sys
import time

import numpy as np

from facenet_tf.sources import frames
# compare and clustering import these from here (their old home) until they import them from their modules
from facenet_tf.sources import folder_images, regular_file  # noqa: F401
from facenet_tf.annotate import process_running  # noqa: F401


def add_face_arguments(parser):
    """The crop, standardisation and embedding flags of recognize.py and cluster.py, and the shared
    inference flags (--precision, --gpu_memory_fraction, --allow_growth; tf_setup). These two bulk
    tools, which have no classic output to keep, default to --precision auto: bf16 where the CPU
    computes it natively (the published model's LFW View 2 figures are the same; docs/networks.md)."""
    from facenet_tf.cli import add_standardization_argument, non_negative_int, positive_int
    from facenet_tf.tf_setup import add_inference_arguments
    parser.add_argument('--image_size', type=positive_int, default=160,
                        help='Image size (height, width) in pixels of the crops the model expects.')
    parser.add_argument('--margin', type=non_negative_int, default=32,
                        help='Margin for the crop around the bounding box (height, width) in pixels, as '
                             'the LFW alignment (--margin 32) and the classic real-time script.')
    add_standardization_argument(parser)
    parser.add_argument('--batch_size', type=positive_int, default=90,
                        help='Number of faces embedded in one batch.')
    add_inference_arguments(parser, precision='auto')
    return parser


def _round(values, digits=1):
    return [round(float(v), digits) for v in values]


def face_record(frame, face):
    """The JSON line of one face: source, frame index and time, box, detection score, landmarks
    (five [x, y]), name, distance (to the nearest known face) and probability (classifier)."""
    return {'source': frame.source.label, 'frame': frame.index,
            'time': None if frame.time is None else round(float(frame.time), 3),
            'box': _round(face['box']), 'score': round(face['score'], 4),
            'landmarks': [_round(p) for p in face['landmarks']],
            'name': face['name'],
            'distance': None if face['distance'] is None else round(face['distance'], 4),
            'probability': None if face['probability'] is None else round(face['probability'], 4)}


class RunStats(object):
    """Counts of the run and a live rate line (frames/s, faces/s) at most every `interval` s."""

    def __init__(self, timer, stream=None, interval=2.0):
        self.timer = timer
        self.stream = stream or sys.stderr
        self.interval = interval
        self.start = time.time()
        self.last = self.start
        self.frames = self.worked = self.without_faces = self.faces = self.sources = self.skipped = 0
        self.names = {}

    def count(self, frame):
        self.frames += 1
        if frame.faces is None:
            return
        self.worked += 1
        self.faces += len(frame.faces)
        if not frame.faces:
            self.without_faces += 1
        for face in frame.faces:
            self.names[face['name']] = self.names.get(face['name'], 0) + 1

    def rate_line(self):
        elapsed = max(time.time() - self.start, 1e-9)
        return 'frames: %d read, %d recognised (%.1f frames/s), faces: %d (%.1f faces/s)' % (
            self.frames, self.worked, self.worked / elapsed, self.faces, self.faces / elapsed)

    def tick(self, force=False):
        now = time.time()
        if force or now - self.last >= self.interval:
            self.last = now
            self.stream.write(self.rate_line() + '\n')
            self.stream.flush()

    def summary(self):
        """Closing lines: counts, names found, rates and the share of time per part."""
        elapsed = max(time.time() - self.start, 1e-9)
        lines = ['sources: %d read, %d skipped' % (self.sources, self.skipped),
                 'frames: %d read, %d recognised, %d without faces; faces: %d'
                 % (self.frames, self.worked, self.without_faces, self.faces)]
        if self.names:
            lines.append('names: ' + ', '.join('%s %d' % (n, c) for n, c in
                                                 sorted(self.names.items(), key=lambda x: (-x[1], x[0]))))
        det, emb = self.timer.seconds.get('detection', 0.0), self.timer.seconds.get('embedding', 0.0)
        lines.append('time: %.1f s, %.2f frames/s, %.2f faces/s; detection %.0f%%, embedding %.0f%%, rest %.0f%%'
                     % (elapsed, self.worked / elapsed, self.faces / elapsed, 100 * det / elapsed,
                        100 * emb / elapsed, 100 * max(elapsed - det - emb, 0.0) / elapsed))
        return lines


def _recognise(pending, pipeline, namer, emit, stats, annotator):
    """Faces and names of the frames to work on in `pending` (one detector call, one embedding pass,
    one naming call), then the records, counts and annotated frames of all of them, in order."""
    work = [f for f in pending if f.work]
    per_frame = pipeline.faces([f.image for f in work]) if work else []
    flat = [face for faces in per_frame for face in faces]
    named = namer(np.stack([face['embedding'] for face in flat])) if flat else []
    for face, (name, distance, probability) in zip(flat, named):
        face['name'], face['distance'], face['probability'] = name, distance, probability
    for frame, faces in zip(work, per_frame):
        frame.faces = faces
    for frame in pending:
        if frame.faces is not None:
            for face in frame.faces:
                emit(face_record(frame, face))
        stats.count(frame)
        if annotator is not None:
            annotator.add(frame)
    stats.tick()


FRAME_BUDGET_PIXELS = 64 * 1024 * 1024   # decoded frames held at once, beyond the one being read


def run(sources, pipeline, namer, emit, stats, annotator=None, every_n_frames=1, frame_batch=8, note=None):
    """Recognise every source in turn, `frame_batch` frames to work on at a time (1 for a camera, so
    that names follow it live), and sooner when the frames held (with the frames between them that
    are kept for the annotated video) reach FRAME_BUDGET_PIXELS: memory does not grow with the
    frame size or --every_n_frames. Returns the source being read when Ctrl-C stopped the run, else
    None."""
    note = note or (lambda text: sys.stderr.write(text + '\n'))
    source, read = None, 0
    try:
        for source in sources:
            batch = 1 if source.kind == 'camera' else frame_batch
            pending, read, work, pixels = [], 0, 0, 0
            for frame in frames(source, every_n_frames, annotator is not None, note):
                read += 1
                pending.append(frame)
                work += frame.work
                pixels += 0 if frame.image is None else frame.image.shape[0] * frame.image.shape[1]
                if work >= batch or pixels >= FRAME_BUDGET_PIXELS:
                    _recognise(pending, pipeline, namer, emit, stats, annotator)
                    pending, work, pixels = [], 0, 0
            if pending:
                _recognise(pending, pipeline, namer, emit, stats, annotator)
            if read:
                stats.sources += 1
            else:
                stats.skipped += 1
            if annotator is not None:
                annotator.finish_video()
        return None
    except KeyboardInterrupt:
        stats.sources += 1 if read else 0
        return source
    finally:
        if annotator is not None:
            annotator.close()
