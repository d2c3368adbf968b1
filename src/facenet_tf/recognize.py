"""Name the faces in photos, folders of photos, video files and cameras.

Every face is detected (MTCNN, all faces), cropped as the aligner does (box grown by margin/2 per
side, resized to image_size), standardised as the model expects, embedded in batches, and named by
a classifier.py file or by the nearest face of a gallery folder (one sub-folder of photos or crops
per person, embedded once and cached in it as .facenet_gallery.npz). A face farther than
--unknown_threshold (L2 distance, the scale compare.py prints) from every known face is `unknown`.

Output: one JSON line per face (source, frame, time, box, score, landmarks, name, distance,
probability) on stdout or --output_jsonl; notes, the rate line and the summary go to stderr.
A camera stream (SOURCE `0`) runs until Ctrl-C, which stops it cleanly.

Outputs never replace an input, and --annotate never goes into an input folder; an existing output
file is replaced only with --overwrite (docs/recognize.md). A run that reads no frame or finds no
face exits with code 2.

Usage:
  python src/recognize.py model.pb photo.jpg folder/ clip.mp4 --gallery people/
  python src/recognize.py model.pb 0 --classifier people.pkl --annotate live.avi --max_side 640
"""
import contextlib
import json
import os
import sys
import time

import numpy as np

from facenet_tf.align import aligner
from facenet_tf import annotate, files, gallery, recognition, sources as source_lib, tf_setup
from facenet_tf.cli import add_model_argument, doc_parser, non_negative_float, positive_int, command
from facenet_tf.errors import FaceNetError


def _note(text):
    sys.stderr.write(text + '\n')
    sys.stderr.flush()


def _check_jsonl(path, inputs, overwrite):
    """Refuse, before any work, a JSON output that is an input (even with --overwrite), exists
    (without it), is a folder, or lies in a folder that does not exist."""
    if path is None:
        return None
    path = os.path.expanduser(path)
    real_inputs = {os.path.realpath(os.path.expanduser(p)) for p in inputs}
    if os.path.realpath(path) in real_inputs:
        raise FaceNetError('%s: --output_jsonl would replace an input file' % path)
    if os.path.isdir(path):
        raise FaceNetError('%s: --output_jsonl names a folder' % path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FaceNetError('%s: the folder of --output_jsonl does not exist' % path)
    return files.check_new_output(path, overwrite)


def _nothing_done(stats):
    """The one-line reason why a run that read no frame, or found no face, failed; None otherwise."""
    if not stats.frames:
        return 'nothing read: every source was skipped (%d skipped)' % stats.skipped
    if not stats.faces:
        return 'no face found in %d frames of %d sources' % (stats.frames, stats.sources)
    return None


def _warm_up(pipeline):
    """Seconds of one detection and one embedding on a blank image. The first session runs set the
    graphs up (seconds on a CPU); run here, they are not counted as the first frames' time (a gallery
    read from its cache, or a classifier file, runs no session before the frames)."""
    t0 = time.perf_counter()
    size = pipeline.image_size
    pipeline.detect([np.zeros((2 * size, 2 * size, 3), np.uint8)])
    pipeline.embed(np.zeros((1, size, size, 3), np.float32))
    return time.perf_counter() - t0


def main(args):
    if args.threshold_file:
        from facenet_tf.operating_points import threshold_from_file
        args.unknown_threshold = threshold_from_file(args.threshold_file, _note)
    sources = source_lib.expand_sources(args.sources, _note)
    if not sources:
        raise FaceNetError('no source to read among: %s' % ' '.join(args.sources))
    inputs = [p for p in args.sources + [args.model, args.gallery, args.classifier]
              if p and os.path.lexists(os.path.expanduser(p))] + [s.spec for s in sources if s.kind != 'camera']
    jsonl = _check_jsonl(args.output_jsonl, inputs, args.overwrite)
    annotator = annotate.Annotator(args.annotate, sources, inputs, _note, args.overwrite) if args.annotate else None
    people = gallery.gallery_people(os.path.expanduser(args.gallery)) if args.gallery else None
    namer = gallery.ClassifierNamer(os.path.expanduser(args.classifier), args.unknown_threshold,
                                    _note) if args.classifier else None
    tf1 = tf_setup.configure().compat.v1
    from facenet_tf import faces   # TensorFlow loads here, after the flags are parsed
    from facenet_tf.align.mtcnn_runtimes import make_detector
    from facenet_tf.runtimes import open_model   # a .pb, a checkpoint folder, .tflite or .onnx
    timer = faces.Timer()
    with tf1.Graph().as_default(), open_model(args.model, args, image_size=args.image_size) as sess, \
            make_detector(args.detector, gpu_memory_fraction=args.gpu_memory_fraction,
                          allow_growth=args.allow_growth) as detector:
        pipeline = faces.FacePipeline(sess, detector, args.image_size, args.margin,
                                      args.use_fixed_image_standardization, args.max_detect_side,
                                      args.batch_size, timer)
        if namer is None:
            namer = gallery.load_gallery(args.gallery, pipeline, args.model, args.unknown_threshold, _note, people,
                                         sess.arithmetic)
        annotate.remove_stale_temporaries(([jsonl] if jsonl else []) +
                                          (annotator.outputs() if annotator is not None else []))
        _note('warm-up: %.1f s (first detection and embedding; not counted in the time summary)'
              % _warm_up(pipeline))
        timer.seconds.clear()
        stats = recognition.RunStats(timer)
        with (files.atomic_open(jsonl) if jsonl else contextlib.nullcontext(sys.stdout)) as out:
            def emit(record):
                out.write(json.dumps(record) + '\n')
            stopped = recognition.run(sources, pipeline, namer, emit, stats, annotator, args.every_n_frames,
                                      note=_note)
            out.flush()
            nothing = None if stopped is not None else _nothing_done(stats)
            if nothing:   # no output file is left for a run that did nothing
                for line in stats.summary():
                    _note(line)
                raise FaceNetError(nothing)
    if stopped is not None:
        _note('stopped by Ctrl-C while reading %s' % stopped.label)
    for line in stats.summary():
        _note(line)
    if annotator is not None:
        for path, count in sorted(annotator.written.items()):
            _note('annotated: %s%s' % (path, '' if count == 1 else ' (%d frames)' % count))
    return 130 if stopped is not None and stopped.kind != 'camera' else 0


def parse_arguments(argv):
    parser = doc_parser(__doc__)
    add_model_argument(parser)
    parser.add_argument('sources', type=str, nargs='+', metavar='SOURCE',
                        help='Image files, folders of images, video files (anything OpenCV reads) or a '
                             'camera index (0).')
    names = parser.add_mutually_exclusive_group(required=True)
    names.add_argument('--classifier', type=str, metavar='CLASSIFIER.pkl',
                       help='Name faces with a classifier file written by classifier.py TRAIN.')
    names.add_argument('--gallery', type=str, metavar='DIR',
                       help='Name faces by the nearest face of this folder (one sub-folder of photos or '
                            'aligned crops per person; image_size x image_size images are taken as crops).')
    unknown = parser.add_mutually_exclusive_group()
    unknown.add_argument('--unknown_threshold', type=non_negative_float, default=0.9,
                        help='A face farther (L2) than this from every known face (gallery faces, or the '
                             'training faces kept in a classifier file) is named unknown. The default suits '
                             'the published model: stricter than its verification threshold (about 1.1), '
                             'as the nearest of many known faces is taken.')
    unknown.add_argument('--threshold_file', type=str, metavar='FILE',
                         help='Take the unknown threshold from a threshold file written by facenet-calibrate '
                              '(its FAR is printed; docs/thresholds.md).')
    parser.add_argument('--output_jsonl', type=str, help='Write the JSON lines to this file instead of stdout.')
    parser.add_argument('--annotate', type=str, metavar='OUT',
                        help='Write annotated frames: a folder (photos under their names, videos as '
                             '<name>.mp4), or one video file (.mp4: mp4v, .avi/.mkv: MJPG) for the first '
                             'video or camera source.')
    files.add_overwrite_argument(parser, 'an existing --output_jsonl file or annotated file (never an input)')
    parser.add_argument('--every_n_frames', type=positive_int, default=1,
                        help='Recognise every n-th frame of a video or camera (the annotated video keeps '
                             'every frame, with the last faces found).')
    parser.add_argument('--max_side', '--max_detect_side', dest='max_detect_side', type=aligner.max_detect_side,
                        default=0, metavar='N',
                        help='Detect faces on a copy of each frame reduced to N pixels on its longest side '
                             '(crops are still cut from the full frame): much faster on HD video. 0 '
                             '(default): detect on the full frame, as the classic tools.')
    aligner.add_detector_argument(parser)
    recognition.add_face_arguments(parser)
    return parser.parse_args(argv)



def console_main():
    """The `facenet-recognize` command (also `python -m facenet_tf.recognize`)."""
    return command(main, parse_arguments)


if __name__ == '__main__':
    sys.exit(console_main())
