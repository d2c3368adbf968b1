"""Annotated output of recognize.py: `Annotator` draws each face's box, name and score on the frames
(`draw_faces`) and writes them as images or a video, every path checked before any work (never an
input, never inside an input folder, an existing file only with --overwrite) and every file written
under a temporary name; `remove_stale_temporaries` deletes what killed runs left beside the outputs."""
import os
import re

import cv2

from facenet_tf import files
from facenet_tf.errors import FaceNetError
from facenet_tf.gallery import UNKNOWN

IMAGE_OUTPUT_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')   # others written as .png
VIDEO_OUTPUT_CODECS = {'.mp4': 'mp4v', '.avi': 'MJPG', '.mkv': 'MJPG', '.mov': 'mp4v'}
VIDEO_TEMPORARY_RE = re.compile(r'^\..+\.(\d+)\.tmp\.[^.]+$')   # an annotated video being written


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
