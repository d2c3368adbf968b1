"""Naming the faces of photos, video files and cameras (recognize.py).

- sources: `expand_sources` turns the command line into image files, video files and cameras;
  `frames` reads each as RGB frames with their index and time (every n-th frame marked for work);
- faces: `FacePipeline` detects every face of a batch of frames with one MTCNN call, crops each as
  the aligner does (box grown by margin/2 per side, PIL bilinear resize), standardises the crops as
  the model expects and embeds them in batches;
- naming: `GalleryNamer` (nearest face of a gallery folder, one sub-folder per person, embedded once
  and cached beside the gallery) or `ClassifierNamer` (a classifier.py file); a face farther than
  the unknown threshold (L2, as compare.py prints) from every known face is `unknown`;
- output: `face_record` (one JSON-ready dict a face), `Annotator` (boxes, names and scores drawn on
  the frames, written as images or a video), `RunStats` (live rate line and summary, with the time
  spent in detection and embedding).
"""
import hashlib
import json
import os
import re
import stat
import sys
import time

import cv2
import numpy as np

from facenet_tf.align import aligner
from facenet_tf import classify, dataset, files
from facenet_tf import images as image_lib
from facenet_tf.errors import FaceNetError
from facenet_tf.model_io import model_tensors

IMAGE_OUTPUT_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')   # others written as .png
VIDEO_OUTPUT_CODECS = {'.mp4': 'mp4v', '.avi': 'MJPG', '.mkv': 'MJPG', '.mov': 'mp4v'}
GALLERY_CACHE = '.facenet_gallery.npz'
VIDEO_TEMPORARY_RE = re.compile(r'^\..+\.(\d+)\.tmp\.[^.]+$')   # an annotated video being written
UNKNOWN = classify.UNKNOWN


class Source(object):
    """One input: kind 'image', 'video' or 'camera'; `spec` is the path or the camera index."""

    def __init__(self, kind, spec, label=None):
        self.kind, self.spec = kind, spec
        self.label = label if label is not None else str(spec)
        self.fps = 0.0

    def __repr__(self):
        return 'Source(%r, %r)' % (self.kind, self.spec)


class Frame(object):
    """An RGB uint8 frame of a source: index (0 for a photo), time in seconds (None for a photo),
    and whether it is to be recognised (`--every_n_frames`); `faces` is filled by the pipeline."""

    def __init__(self, source, index, time_s, image, work=True):
        self.source, self.index, self.time, self.image, self.work = source, index, time_s, image, work
        self.faces = None


def regular_file(path):
    """Whether `path` is a regular file (a symlink to one counts): a FIFO, device or socket would
    block or never end when read, so no tool opens one."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def folder_images(folder):
    """The image files under `folder`, recursively, sorted: regular files with an image extension,
    hidden files and folders left out."""
    found = []
    for parent, subdirs, names in os.walk(folder):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith('.'))
        found.extend(os.path.join(parent, n) for n in sorted(names)
                     if n.lower().endswith(dataset.IMAGE_EXTENSIONS) and not n.startswith('.')
                     and regular_file(os.path.join(parent, n)))
    return found


def expand_sources(specs, note):
    """Sources of the command line: a number is a camera index (unless such a file exists), a
    folder gives its image files (regular files only, recursively, sorted), a file with an image
    extension is a photo, any other file a video. A missing path, or one that is no regular file
    (a FIFO, a device), gets a note and is left out."""
    sources = []
    for spec in specs:
        path = os.path.expanduser(spec)
        if spec.isdigit() and not os.path.lexists(path):
            sources.append(Source('camera', int(spec), 'camera %s' % spec))
        elif os.path.isdir(path):
            found = folder_images(path)
            if not found:
                note('%s: no image files in this folder: skipped' % spec)
            sources.extend(Source('image', p) for p in found)
        elif regular_file(path):
            kind = 'image' if path.lower().endswith(dataset.IMAGE_EXTENSIONS) else 'video'
            sources.append(Source(kind, path))
        elif os.path.exists(path):
            note('%s: not a regular file (a FIFO, device or socket is never read): skipped' % spec)
        else:
            note('%s: no such file or folder: skipped' % spec)
    return sources


# Leading bytes of the video containers read (offset, bytes): anything else (a playlist, a
# concatenation list, a text file) is refused before OpenCV's demuxers see it, so no file can make
# them open other files or network addresses.
VIDEO_SIGNATURES = (
    (4, b'ftyp'), (4, b'moov'), (4, b'mdat'), (4, b'free'), (4, b'wide'), (4, b'skip'),  # MP4, MOV, 3GP
    (0, b'RIFF'),                      # AVI
    (0, b'\x1a\x45\xdf\xa3'),          # Matroska, WebM
    (0, b'\x00\x00\x01\xba'),          # MPEG program stream
    (0, b'FLV'), (0, b'OggS'),
    (0, b'\x30\x26\xb2\x75\x8e\x66\xcf\x11'),  # ASF, WMV
)
MPEG_TS_PACKET = 188
MAX_VIDEO_PIXELS = 8192 * 8192   # a frame larger than this (width x height as the file declares) is refused


def video_problem(path):
    """Why the file at `path` is not read as a video (no known container signature), or None."""
    with open(path, 'rb') as f:
        head = f.read(2 * MPEG_TS_PACKET + 1)
    if any(head[offset:offset + len(magic)] == magic for offset, magic in VIDEO_SIGNATURES):
        return None
    if len(head) > MPEG_TS_PACKET and head[0] == head[MPEG_TS_PACKET] == 0x47:   # MPEG transport stream
        return None
    return 'not a video file (no known container signature)'


def quiet_video_logs():
    """Silence OpenCV's and FFmpeg's own log lines (a damaged video would print several), so a bad
    video is the one note of `open_capture`; an explicit OPENCV_FFMPEG_LOGLEVEL is kept."""
    os.environ.setdefault('OPENCV_FFMPEG_LOGLEVEL', '-8')   # AV_LOG_QUIET
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def open_capture(source, note):
    """An opened cv2.VideoCapture of a video or camera source, or None after a note. A video file
    is checked first (a known container, a frame of at most MAX_VIDEO_PIXELS) and opened by its
    absolute path with the FFmpeg backend only (no image-sequence patterns, no protocol prefixes)."""
    quiet_video_logs()
    if source.kind == 'camera':
        capture = cv2.VideoCapture(source.spec)
    else:
        try:
            problem = video_problem(source.spec)
        except OSError as e:
            problem = 'cannot read (%s)' % (e.strerror or e)
        if problem:
            note('%s: %s: skipped' % (source.label, problem))
            return None
        capture = cv2.VideoCapture(os.path.abspath(source.spec), cv2.CAP_FFMPEG)
    if not capture.isOpened():
        capture.release()
        note('%s: cannot open as a video%s: skipped' % (source.label, ' camera' if source.kind == 'camera' else ''))
        return None
    width, height = capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)
    if width * height > MAX_VIDEO_PIXELS:
        capture.release()
        note('%s: frames of %dx%d pixels, more than %d: skipped' % (source.label, width, height, MAX_VIDEO_PIXELS))
        return None
    return capture


def frames(source, every_n_frames, decode_skipped, note):
    """Frames of a source in order. A photo is one frame; of a video or camera every frame is
    yielded with work = (index % every_n_frames == 0); frames without work are decoded only when
    decode_skipped (for the annotated video), else yielded with image None. Unreadable input gets
    a note and yields nothing."""
    if source.kind == 'image':
        try:
            yield Frame(source, 0, None, image_lib.read_rgb(source.spec))
        except image_lib.ImageReadError as e:
            note('%s: cannot read (%s): skipped' % (source.label, e))
        return
    capture = open_capture(source, note)
    if capture is None:
        return
    fps = source.fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
    start = time.time()
    index = 0
    try:
        while True:
            work = index % every_n_frames == 0
            if work or decode_skipped:
                ok, bgr = capture.read()
                image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if ok else None
            else:
                ok, image = capture.grab(), None
            if not ok:
                break
            if source.kind == 'camera':
                t = time.time() - start
            else:
                t = index / fps if fps > 0 else capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            yield Frame(source, index, t, image, work)
            index += 1
    finally:
        capture.release()


def add_face_arguments(parser):
    """The crop, standardisation and embedding flags of recognize.py and cluster.py."""
    from facenet_tf.cli import non_negative_int, positive_int
    from facenet_tf.precision import add_precision_argument
    parser.add_argument('--image_size', type=positive_int, default=160,
                        help='Image size (height, width) in pixels of the crops the model expects.')
    parser.add_argument('--margin', type=non_negative_int, default=32,
                        help='Margin for the crop around the bounding box (height, width) in pixels, as '
                             'the LFW alignment (--margin 32) and the classic real-time script.')
    parser.add_argument('--use_fixed_image_standardization', action='store_true',
                        help='Standardize as (x - 127.5) / 128 (the 2018 models) instead of prewhitening.')
    parser.add_argument('--batch_size', type=positive_int, default=90,
                        help='Number of faces embedded in one batch.')
    add_precision_argument(parser)
    return parser


def standardizer(fixed_standardization):
    """The standardisation the model was trained with: fixed (x - 127.5) / 128 or per-image prewhiten."""
    return image_lib.fixed_standardize if fixed_standardization else image_lib.prewhiten


class Timer(object):
    """Seconds accumulated per named part of the work."""

    def __init__(self):
        self.seconds = {}

    def add(self, part, seconds):
        self.seconds[part] = self.seconds.get(part, 0.0) + seconds


def embed_faces(sess, faces, batch_size):
    """Embeddings of standardised face crops [N, size, size, 3] through the model in `sess`, in batches."""
    images, phase_train, embeddings = model_tensors(sess.graph)
    out = []
    for start in range(0, len(faces), batch_size):
        feed = {images: faces[start:start + batch_size]}
        if phase_train is not None:
            feed[phase_train] = False
        out.append(sess.run(embeddings, feed))
    dim = embeddings.shape.as_list()[-1] or 0
    return np.concatenate(out) if out else np.zeros((0, dim), np.float32)


class FacePipeline(object):
    """Detect every face of a batch of frames (one detector call), crop and standardise them as the
    aligner does, and embed all crops in batches; the Timer gets 'detection' and 'embedding'."""

    def __init__(self, sess, detector, image_size=160, margin=44, fixed_standardization=False,
                 max_detect_side=0, batch_size=90, timer=None):
        self.sess, self.detector = sess, detector
        self.image_size, self.margin = image_size, margin
        self.standardize = standardizer(fixed_standardization)
        self.max_detect_side, self.batch_size = max_detect_side, batch_size
        self.timer = timer or Timer()

    def detect(self, images):
        """(boxes [N, 5], points [10, N]) per image."""
        t0 = time.perf_counter()
        found = aligner.detect_faces(self.detector, images, self.max_detect_side)
        self.timer.add('detection', time.perf_counter() - t0)
        return found

    def crop(self, image, box):
        """(standardised float32 crop, int box) of one detection, or (None, box) off the image."""
        face, bb = aligner.crop_face(image, box[0:4], self.image_size, self.margin)
        return (None if face is None else self.standardize(face).astype(np.float32)), bb

    def embed(self, crops):
        t0 = time.perf_counter()
        emb = embed_faces(self.sess, np.stack(crops) if crops else
                          np.zeros((0, self.image_size, self.image_size, 3), np.float32), self.batch_size)
        self.timer.add('embedding', time.perf_counter() - t0)
        return emb

    def faces(self, images):
        """Per image, a list of face dicts (box, score, landmarks, embedding) for every detected face."""
        per_image, crops = [], []
        for image, (boxes, points) in zip(images, self.detect(images)):
            faces = []
            for k in range(boxes.shape[0]):
                crop, _ = self.crop(image, boxes[k])
                if crop is None:
                    continue
                faces.append({'box': boxes[k, 0:4], 'score': float(boxes[k, 4]),
                              'landmarks': np.stack([points[0:5, k], points[5:10, k]], axis=1)})
                crops.append(crop)
            per_image.append(faces)
        emb = self.embed(crops)
        k = 0
        for faces in per_image:
            for face in faces:
                face['embedding'] = emb[k]
                k += 1
        return per_image


class GalleryNamer(object):
    """Names faces by the nearest gallery face: that person, or UNKNOWN beyond the threshold."""

    def __init__(self, names, embeddings, labels, unknown_threshold):
        self.names, self.embeddings, self.labels = list(names), embeddings, np.asarray(labels)
        self.unknown_threshold = unknown_threshold

    def __call__(self, emb):
        """[(name, distance, probability None)] for each embedding."""
        if not len(emb):
            return []
        dist, labels = classify.nearest_known(self.embeddings, self.labels, emb)
        return [(UNKNOWN if d > self.unknown_threshold else self.names[int(lab)], float(d), None)
                for d, lab in zip(dist, labels)]


class ClassifierNamer(object):
    """Names faces with a classifier.py file: the best class and its probability; with the training
    embeddings kept in the file, UNKNOWN beyond the threshold (a classic file has none: no unknown).
    The file is read by classify.load (the restricted unpickler); a file whose classes or embedding
    size do not fit is refused with one line naming it."""

    def __init__(self, path, unknown_threshold, note):
        self.path = path
        self.model, self.class_names = classify.load(path)
        classes = np.asarray(getattr(self.model, 'classes_', []))
        if classes.dtype.kind not in 'iu' or classes.size == 0 or classes.min() < 0 or \
                classes.max() >= len(self.class_names):
            raise FaceNetError('%s: its classes are not indices into its %d class names'
                               % (path, len(self.class_names)))
        self.unknown_threshold = unknown_threshold
        if getattr(self.model, 'facenet_embeddings_', None) is None:
            note('%s holds no training embeddings (a classic file): every face gets its best class, '
                 'none is unknown' % path)
            self.unknown_threshold = None

    def __call__(self, emb):
        if not len(emb):
            return []
        expected = getattr(self.model, 'n_features_in_', emb.shape[1])
        if expected != emb.shape[1]:
            raise FaceNetError('%s: the classifier takes %s-D embeddings, the model gives %d-D'
                               % (self.path, expected, emb.shape[1]))
        try:
            names, probabilities, distances = classify.predict(self.model, self.class_names, emb,
                                                               self.unknown_threshold)
        except (ValueError, TypeError, IndexError, AttributeError) as e:
            raise FaceNetError('%s: cannot name faces with this classifier (%s)'
                               % (self.path, str(e).splitlines()[0] if str(e) else type(e).__name__))
        return [(n, None if distances is None else float(distances[i]), float(probabilities[i]))
                for i, n in enumerate(names)]


def _gallery_key(gallery_dir, people, model, settings):
    """A hash of everything the gallery's embeddings depend on: the model file(s), the crop and
    standardisation settings, and every image's path, size and modification time."""
    h = hashlib.sha1()
    model = os.path.abspath(os.path.expanduser(model))
    model_files = [model] if os.path.isfile(model) else sorted(
        os.path.join(model, f) for f in os.listdir(model))
    for f in model_files:
        st = os.stat(f)
        h.update(('%s %d %d\n' % (f, st.st_size, st.st_mtime_ns)).encode())
    h.update(json.dumps(settings, sort_keys=True).encode())
    for person in people:
        for path in person.image_paths:
            st = os.stat(path)
            h.update(('%s %d %d\n' % (os.path.relpath(path, gallery_dir), st.st_size, st.st_mtime_ns)).encode())
    return h.hexdigest()


def gallery_crop(pipeline, image):
    """The crop of a gallery image: the image itself when it is already image_size x image_size (an
    aligned crop), else the face the aligner would choose (largest, central); None without a face."""
    size = pipeline.image_size
    if image.shape[0] == size and image.shape[1] == size:
        return pipeline.standardize(image).astype(np.float32)
    boxes, _ = pipeline.detect([image])[0]
    if boxes.shape[0] == 0:
        return None
    crop, _ = pipeline.crop(image, boxes[aligner.choose_face(boxes, image.shape)])
    return crop


def gallery_people(gallery_dir):
    """The people of a gallery folder: one ImageClass per sub-folder (sorted, hidden ones left out)
    with its files (regular files only: a FIFO is never opened); a one-line error when there is none
    with images. Listed here rather than with dataset.get_dataset, which splits paths at ':'."""
    if not os.path.isdir(gallery_dir):
        raise FaceNetError('%s: the gallery folder does not exist' % gallery_dir)
    people = []
    for name in sorted(os.listdir(gallery_dir)):
        folder = os.path.join(gallery_dir, name)
        if name.startswith('.') or not os.path.isdir(folder):
            continue
        paths = dataset.get_image_paths(folder)   # regular files only (os.path.isfile)
        if paths:
            people.append(dataset.ImageClass(name, paths))
    if not people:
        raise FaceNetError('%s: the gallery has no person folder with images (one sub-folder per person)'
                           % gallery_dir)
    return people


CACHE_BYTES_PER_IMAGE = 32 * 1024   # room for one embedding of up to 4096 float32 values and its label


def _read_cache(cache, key, nrof_people, nrof_images):
    """(embeddings, labels) of the gallery cache when it is a regular file (not a link) holding
    arrays for `key` that fit the gallery; else None. Its declared sizes are checked before any
    array is read, so a crafted cache cannot take memory beyond CACHE_BYTES_PER_IMAGE per image."""
    import zipfile
    try:
        if not stat.S_ISREG(os.lstat(cache).st_mode):
            return None
        with zipfile.ZipFile(cache) as z:
            if sorted(i.filename for i in z.infolist()) != ['embeddings.npy', 'key.npy', 'labels.npy'] or \
                    sum(i.file_size for i in z.infolist()) > (nrof_images + 1) * CACHE_BYTES_PER_IMAGE:
                return None
        with np.load(cache, allow_pickle=False) as data:
            if str(data['key']) != key:
                return None
            emb, labels = data['embeddings'], data['labels']
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    if emb.ndim != 2 or emb.dtype.kind != 'f' or labels.ndim != 1 or labels.dtype.kind not in 'iu' or \
            len(labels) != len(emb) or not len(labels) or labels.min() < 0 or labels.max() >= nrof_people:
        return None
    return emb, labels


def load_gallery(gallery_dir, pipeline, model, unknown_threshold, note, people=None):
    """A GalleryNamer of a folder with one sub-folder of photos or crops per person (`people`: its
    gallery_people, listed again when not given). The embeddings are cached in
    gallery_dir/.facenet_gallery.npz and reused while the model, the settings and the images are
    unchanged; a cache path that is a link or no regular file is neither read nor replaced."""
    gallery_dir = os.path.expanduser(gallery_dir)
    people = people if people is not None else gallery_people(gallery_dir)
    settings = {'image_size': pipeline.image_size, 'margin': pipeline.margin,
                'standardize': pipeline.standardize.__name__, 'max_detect_side': pipeline.max_detect_side}
    key = _gallery_key(gallery_dir, people, model, settings)
    cache = os.path.join(gallery_dir, GALLERY_CACHE)
    names = [classify.display_name(p.name) for p in people]
    cached = _read_cache(cache, key, len(people), sum(len(p.image_paths) for p in people))
    if cached is not None:
        note('gallery: %d faces of %d people from the cache %s' % (len(cached[1]), len(people), cache))
        return GalleryNamer(names, cached[0], cached[1], unknown_threshold)
    crops, labels, parts = [], [], []
    for label, person in enumerate(people):
        for path in person.image_paths:
            try:
                crop = gallery_crop(pipeline, image_lib.read_rgb(path))
            except image_lib.ImageReadError as e:
                note('gallery: cannot read %s (%s): left out' % (path, e))
                continue
            if crop is None:
                note('gallery: no face in %s: left out' % path)
                continue
            crops.append(crop)
            labels.append(label)
            if len(crops) == pipeline.batch_size:   # crops held: one batch at most
                parts.append(pipeline.embed(crops))
                crops = []
    if crops:
        parts.append(pipeline.embed(crops))
    if not parts:
        raise FaceNetError('%s: no face found in the gallery' % gallery_dir)
    emb = np.concatenate(parts)
    labels = np.asarray(labels, np.int64)
    missing = [names[i] for i in range(len(people)) if i not in set(labels.tolist())]
    if missing:
        note('gallery: no usable face of %s' % ', '.join(missing))
    if os.path.lexists(cache) and not stat.S_ISREG(os.lstat(cache).st_mode):
        note('gallery: %d faces of %d people embedded (cache not written: %s is not a regular file)'
             % (len(labels), len(people), cache))
        return GalleryNamer(names, emb, labels, unknown_threshold)
    try:
        with files.atomic_path(cache) as tmp:
            with open(tmp, 'wb') as f:
                np.savez(f, key=np.array(key), embeddings=emb, labels=labels)
        note('gallery: %d faces of %d people embedded, cached in %s' % (len(labels), len(people), cache))
    except OSError as e:
        note('gallery: %d faces of %d people embedded (cache not written: %s)'
             % (len(labels), len(people), e.strerror or e))
    return GalleryNamer(names, emb, labels, unknown_threshold)


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


def draw_faces(rgb, faces):
    """A BGR copy of the frame with each face's box and 'name score' label (green known, red unknown)."""
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    scale = max(0.4, min(bgr.shape[0], bgr.shape[1]) / 600.0)
    thick = max(1, int(round(scale * 2)))
    for face in faces:
        x1, y1, x2, y2 = [int(round(v)) for v in face['box']]
        colour = (0, 0, 255) if face['name'] == UNKNOWN else (0, 200, 0)
        cv2.rectangle(bgr, (x1, y1), (x2, y2), colour, thick)
        score = face['probability'] if face['probability'] is not None else face['distance']
        label = face['name'] if score is None else '%s %.2f' % (face['name'], score)
        (w, h), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale * 0.6, thick)
        top = max(0, y1 - h - base - 2)
        cv2.rectangle(bgr, (x1, top), (x1 + w + 2, top + h + base + 2), colour, cv2.FILLED)
        cv2.putText(bgr, label, (x1 + 1, top + h + 1), cv2.FONT_HERSHEY_SIMPLEX, scale * 0.6,
                    (255, 255, 255), thick, cv2.LINE_AA)
    return bgr


def is_video_path(path):
    return os.path.splitext(path)[1].lower() in VIDEO_OUTPUT_CODECS


def process_running(pid):
    """Whether a process with this id runs (a temporary file of a live run is never deleted)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def remove_stale_temporaries(paths):
    """Delete what killed runs left beside the outputs `paths`: their temporary files
    (`.<name>.<pid>.tmp`, or `.<stem>.<pid>.tmp<ext>` for a video) whose process no longer runs."""
    by_folder = {}
    for path in paths:
        folder, name = os.path.split(os.path.abspath(path))
        by_folder.setdefault(folder, set()).add(name)
    for folder, names in by_folder.items():
        try:
            present = os.listdir(folder)
        except OSError:
            continue
        for entry in present:
            match = files.TEMPORARY_RE.match(entry) or VIDEO_TEMPORARY_RE.match(entry)
            if not match or int(match.group(1)) == os.getpid() or process_running(int(match.group(1))):
                continue
            stem, _, ext = entry[1:].partition('.%s.tmp' % match.group(1))
            if stem + ext in names:
                try:
                    os.remove(os.path.join(folder, entry))
                except OSError:
                    pass


def _inside(path, folder):
    """Whether the real path `path` is `folder` or lies below it (both real paths)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


class Annotator(object):
    """Writes annotated frames: photos as images in a folder (the photo's name, made unique), videos
    and cameras as a video (<folder>/<source stem>.mp4, or `out` itself when it has a video
    extension: then only the first video or camera that gives frames is annotated, the other sources
    get a note). Every frame of a video is written (frames between recognised ones carry the last
    faces), so the output has the input's frame count.

    Every output path is planned and checked when the Annotator is made, before any work: the
    output (folder or video file) must not be, contain or lie inside an input folder (`inputs`: the
    sources, the gallery, the model), no output may be an input file (even with `overwrite`), and
    an existing output file is replaced only with `overwrite`. Nothing is written until the first
    frame; each file is written under a temporary name and renamed when complete (a link in its
    place is replaced, never written through)."""

    def __init__(self, out, sources, inputs, note, overwrite=False):
        self.out = os.path.expanduser(out)
        self.note = note
        self.single_video = is_video_path(self.out)
        self.folder = os.path.dirname(os.path.abspath(self.out)) if self.single_video else self.out
        self.writer, self.writer_source, self.last_faces, self.path, self.tmp = None, None, [], None, None
        self.written = {}
        self.left_out = set()
        self.paths = self._plan(sources)
        self._check(inputs, overwrite)

    def _plan(self, sources):
        """{source: output path} (one video file: every video and camera gets it)."""
        paths, used = {}, set()
        for source in sources:
            if self.single_video:
                if source.kind != 'image':
                    paths[source] = self.out
                continue
            if source.kind == 'image':
                name = os.path.basename(source.spec)
                if not name.lower().endswith(IMAGE_OUTPUT_EXTENSIONS):
                    name = os.path.splitext(name)[0] + '.png'
            elif source.kind == 'camera':
                name = 'camera_%d.mp4' % source.spec
            else:
                name = os.path.splitext(os.path.basename(source.spec))[0] + '.mp4'
            stem, ext = os.path.splitext(name)
            candidate, k = name, 1
            while candidate in used:
                candidate, k = '%s_%d%s' % (stem, k, ext), k + 1
            used.add(candidate)
            paths[source] = os.path.join(self.folder, candidate)
        return paths

    def _check(self, inputs, overwrite):
        real = [os.path.realpath(os.path.expanduser(p)) for p in inputs if os.path.lexists(os.path.expanduser(p))]
        input_folders = [p for p in real if os.path.isdir(p)]
        input_files = {p for p in real if not os.path.isdir(p)}
        if not self.single_video and os.path.lexists(self.out) and not os.path.isdir(self.out):
            raise FaceNetError('%s: --annotate names an existing file, not a folder (a folder, or a video '
                               'file ending in %s)' % (self.out, '/'.join(sorted(VIDEO_OUTPUT_CODECS))))
        out = os.path.realpath(self.out)
        for folder in input_folders:
            if _inside(out, folder) or (not self.single_video and _inside(folder, out)):
                raise FaceNetError('%s: --annotate must not be, contain or lie inside the input folder %s '
                                   '(annotated files would mix with the inputs)' % (self.out, folder))
        for path in self.outputs():
            if os.path.realpath(path) in input_files:
                raise FaceNetError('%s: the annotated output would replace an input file' % path)
            if os.path.isdir(path):
                raise FaceNetError('%s: the annotated output would replace a folder' % path)
            files.check_new_output(path, overwrite)

    def outputs(self):
        """Every path this Annotator may write."""
        return sorted(set(self.paths.values()) | ({self.out} if self.single_video else set()))

    def _makedirs(self, path):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    def _video_writer(self, frame, fps):
        path = self.paths[frame.source]
        self._makedirs(path)
        stem, ext = os.path.splitext(os.path.basename(path))
        tmp = os.path.join(os.path.dirname(path), '.%s.%d.tmp%s' % (stem, os.getpid(), ext))
        h, w = frame.image.shape[0:2]
        codec = VIDEO_OUTPUT_CODECS[ext.lower()]
        writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*codec), fps if fps > 0 else 25.0, (w, h))
        if not writer.isOpened():
            writer.release()
            if os.path.lexists(tmp):
                os.remove(tmp)
            raise FaceNetError('%s: cannot write the video (codec %s)' % (path, codec))
        return writer, path, tmp

    def add(self, frame):
        """Write one frame (photos: one file each)."""
        if self.single_video and (frame.source.kind == 'image' or self.written and
                                  self.writer_source is not frame.source):
            if frame.source not in self.left_out:
                self.left_out.add(frame.source)
                self.note('%s: not annotated (--annotate %s is one video file, given to the first video)'
                          % (frame.source.label, self.out))
            return
        if frame.source.kind == 'image':
            path = self.paths[frame.source]
            ok, data = cv2.imencode(os.path.splitext(path)[1], draw_faces(frame.image, frame.faces or []))
            if not ok:
                raise FaceNetError('%s: cannot encode the annotated image' % path)
            self._makedirs(path)
            files.write_atomic(path, data.tobytes())
            self.written[path] = 1
            return
        if self.writer_source is not frame.source:
            self.finish_video()
            self.writer, self.path, self.tmp = self._video_writer(frame, frame.source.fps)
            self.writer_source, self.last_faces = frame.source, []
            self.written[self.path] = 0
        if frame.faces is not None:
            self.last_faces = frame.faces
        self.writer.write(draw_faces(frame.image, self.last_faces))
        self.written[self.path] += 1

    def finish_video(self):
        """Close the video being written and rename it into place."""
        if self.writer is not None:
            self.writer.release()
            os.replace(self.tmp, self.path)
        self.writer = self.tmp = None
        if not self.single_video:
            self.writer_source = None

    def close(self):
        self.finish_video()


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
