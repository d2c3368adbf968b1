"""Benchmark: recognize.py on a 640x480 video with 1-3 faces a frame; frames/s, faces/s and the
share of time in detection, embedding and the rest (decoding, crops, naming, JSON).

The video is assembled from LFW photos (../shared): frame i shows 1, 2 or 3 people side by side
(i % 3 + 1), drawn from four people whose other photos form the gallery. The run is recognize.py's
main in-process (model loading and the gallery excluded from the rate, as its summary reports them).

    python benchmarks/bench_recognize.py [--model PB] [--frames 90] [--every_n_frames 1] [--max_side 0]
"""
import argparse
import contextlib
import io
import os
import shutil
import sys
import tempfile
import time

import numpy as np

from _paths import SHARED

LFW = os.path.join(SHARED, 'data', 'lfw_deepfunneled')
PEOPLE = ('Colin_Powell', 'Serena_Williams', 'Tony_Blair', 'Gerhard_Schroeder')
W, H, FACE = 640, 480, 210


def build(folder, nrof_frames, fps):
    """(video path, gallery folder) in folder."""
    import cv2
    gallery = os.path.join(folder, 'gallery')
    for person in PEOPLE:
        os.makedirs(os.path.join(gallery, person))
        for i in (1, 2, 3):
            name = '%s_%04d.jpg' % (person, i)
            os.symlink(os.path.join(LFW, person, name), os.path.join(gallery, person, name))
    photos = {p: [cv2.resize(cv2.imread(os.path.join(LFW, p, '%s_%04d.jpg' % (p, i))), (FACE, FACE),
                             interpolation=cv2.INTER_AREA) for i in range(10, 16)] for p in PEOPLE}
    video = os.path.join(folder, 'people_640x480.avi')
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*'MJPG'), fps, (W, H))
    for i in range(nrof_frames):
        frame = np.full((H, W, 3), 90, np.uint8)
        n = i % 3 + 1
        left = (W - n * FACE) // 2
        for k in range(n):
            person = PEOPLE[(i + k) % len(PEOPLE)]
            frame[(H - FACE) // 2:(H + FACE) // 2, left + k * FACE:left + (k + 1) * FACE] = \
                photos[person][(i // 3) % len(photos[person])]
        writer.write(frame)
    writer.release()
    return video, gallery


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', default=os.path.expanduser('~/work/models/20170512-110547.pb'))
    parser.add_argument('--frames', type=int, default=90)
    parser.add_argument('--fps', type=float, default=10.0)
    parser.add_argument('--every_n_frames', type=int, default=1)
    parser.add_argument('--max_side', type=int, default=0)
    args = parser.parse_args()
    if not os.path.isdir(LFW):
        sys.exit('bench_recognize: ../shared/data/lfw_deepfunneled not found')
    from facenet_tf import recognize
    tmp = tempfile.mkdtemp(prefix='bench_recognize_')
    try:
        video, gallery = build(tmp, args.frames, args.fps)
        with open('/proc/loadavg') as f:
            load = f.read().split()[0:3]
        err = io.StringIO()
        start = time.time()
        with contextlib.redirect_stderr(err):
            recognize.main(recognize.parse_arguments(
                [args.model, video, '--gallery', gallery, '--output_jsonl', os.path.join(tmp, 'faces.jsonl'),
                 '--every_n_frames', str(args.every_n_frames), '--max_side', str(args.max_side)]))
        wall = time.time() - start
        summary = [line for line in err.getvalue().splitlines()
                   if line.startswith(('names:', 'time:')) or line.startswith('frames:') and 'without faces' in line]
        print('video: %dx%d, %d frames, 1-3 faces a frame; every %d frame(s); max_side %d'
              % (W, H, args.frames, args.every_n_frames, args.max_side))
        for line in summary:
            print(line)
        print('wall time with model loading and gallery: %.1f s; load average before: %s'
              % (wall, ' '.join(load)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main()
