"""The inputs of recognize.py: `expand_sources` turns the command line into photos, video files and
cameras (regular files only: a FIFO or device is never read); `frames` reads each as RGB frames with
their index and time (every n-th frame marked for work). A video file is read only when it starts
with a known container signature and declares frames of at most MAX_VIDEO_PIXELS, and is opened by
OpenCV's FFmpeg backend alone, so no file can make the demuxers open other files or addresses."""
import os
import stat
import time

import cv2

from facenet_tf import dataset
from facenet_tf import images as image_lib


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


def folder_images(folder, skipped=None):
    """The image files under `folder`, recursively, sorted: regular files with an image extension,
    hidden files and folders left out; other regular files are appended to `skipped` (the rule of
    dataset.get_image_paths)."""
    found = []
    for parent, subdirs, names in os.walk(folder):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith('.'))
        for n in sorted(names):
            path = os.path.join(parent, n)
            if n.startswith('.') or not regular_file(path):
                continue
            if dataset.is_image_name(n):
                found.append(path)
            elif skipped is not None:
                skipped.append(path)
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
            not_images = []
            found = folder_images(path, not_images)
            dataset.note_skipped(not_images, note)
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
