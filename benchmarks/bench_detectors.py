"""Benchmark: the MTCNN detector on TensorFlow, onnxruntime and TFLite (same cascade), and its faces.

Times per 250x250 LFW image (the first --images of the 300 reference images, in batches of
--batch as the aligner detects them, and one image at a time as compare/the API do) and per 1280x720
frame (the group photo detection_photos/multiface.jpg resized), as wall time and as CPU time of this
process (the fair figure on a shared machine); the median of --repeat interleaved rounds. Then the
faces against TensorFlow's: images whose face count differs, largest box / landmark / score gap.
With --stages, the network time of each stage (PNet, RNet, ONet) per image in batch mode.

    python benchmarks/bench_detectors.py [--images 100] [--batch 32] [--repeat 3] [--threads N] [--stages]
"""
import argparse
import os
import time

import numpy as np

from _paths import SHARED
from _machine import cpu_line

LIST = os.path.join(SHARED, 'reference', 'mtcnn', 'lfw_devtrain300_list.txt')
LFW = os.path.join(SHARED, 'data', 'lfw_deepfunneled')
GROUP_PHOTO = os.path.join(SHARED, 'data', 'detection_photos', 'multiface.jpg')
KINDS = ('tf', 'onnx', 'tflite')



def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


class StageClock(object):
    """Wraps a detector's three network callables to add up their time."""

    def __init__(self, holder):
        self.seconds = {}
        for name in ('pnet', 'rnet', 'onet'):
            setattr(holder, name, self._wrap(name, getattr(holder, name)))

    def _wrap(self, name, fn):
        def run(x):
            t = time.perf_counter()
            out = fn(x)
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t
            return out
        return run


def compare_faces(found, expected):
    """(images with another face count, max box gap px, max landmark gap px, max score gap)."""
    differ, box, mark, score = 0, 0.0, 0.0, 0.0
    for (b, p), (rb, rp) in zip(found, expected):
        if b.shape != rb.shape:
            differ += 1
            continue
        if b.size:
            box = max(box, float(np.abs(b[:, :4] - rb[:, :4]).max()))
            score = max(score, float(np.abs(b[:, 4] - rb[:, 4]).max()))
            mark = max(mark, float(np.abs(p - rp).max()))
    return differ, box, mark, score


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--images', type=int, default=100)
    parser.add_argument('--batch', type=int, default=32)
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--frames', type=int, default=5, help='1280x720 frames per round')
    parser.add_argument('--threads', type=int, default=None, help='runtime threads (default: all cores)')
    parser.add_argument('--stages', action='store_true')
    parser.add_argument('--kinds', nargs='+', choices=KINDS, default=list(KINDS))
    args = parser.parse_args()
    from PIL import Image
    from facenet_tf.align.mtcnn_runtimes import make_detector
    from facenet_tf.images import read_rgb
    with open(LIST) as f:
        names = [line.strip() for line in f if line.strip()][:args.images]
    images = [read_rgb(os.path.join(LFW, n)) for n in names]
    frame = np.asarray(Image.open(GROUP_PHOTO).convert('RGB').resize((1280, 720), Image.BILINEAR))
    detectors = {k: make_detector(k, threads=args.threads) for k in args.kinds}
    for det in detectors.values():   # warm-up: first calls of every shape
        det.detect_batch(images[:args.batch])
        det.detect(frame)
    rows = {k: {'batch': [], 'one': [], 'frame': []} for k in detectors}
    found = {}
    for _ in range(args.repeat):
        for kind, det in detectors.items():
            out = []
            wall, cpu = _timed(lambda: out.extend(det.detect_batch(images[i:i + args.batch])
                                                  for i in range(0, len(images), args.batch)))
            rows[kind]['batch'].append((wall / len(images), cpu / len(images)))
            found[kind] = [r for part in out for r in part]
            wall, cpu = _timed(lambda: [det.detect(img) for img in images])
            rows[kind]['one'].append((wall / len(images), cpu / len(images)))
            wall, cpu = _timed(lambda: [det.detect(frame) for _ in range(args.frames)])
            rows[kind]['frame'].append((wall / args.frames, cpu / args.frames))
            found[kind + ':frame'] = [det.detect(frame)]
    print(cpu_line())
    print('%d LFW images (250x250), batches of %d; 1280x720 frame: multiface.jpg resized; median of %d rounds; '
          'threads %s' % (len(images), args.batch, args.repeat, args.threads or 'all'))
    print('| detector | ms/image, batches (wall / CPU) | ms/image, one at a time (wall / CPU) | '
          'ms/1280x720 frame (wall / CPU) | faces (LFW, frame) | images with another count | '
          'max box / landmark / score gap vs TF |')
    print('| --- | --- | --- | --- | --- | --- | --- |')
    base = rows['tf'] if 'tf' in rows else None
    for kind in detectors:
        cells = []
        for mode in ('batch', 'one', 'frame'):
            wall, cpu = np.median(np.array(rows[kind][mode]), axis=0) * 1000
            speed = ''
            if base is not None and kind != 'tf':
                ref_cpu = np.median(np.array(base[mode]), axis=0)[1] * 1000
                speed = ' (%.2fx)' % (ref_cpu / cpu)
            cells.append('%.1f / %.1f%s' % (wall, cpu, speed))
        faces = '%d, %d' % (sum(b.shape[0] for b, _ in found[kind]), found[kind + ':frame'][0][0].shape[0])
        if 'tf' in found and kind != 'tf':
            differ, box, mark, score = compare_faces(found[kind] + found[kind + ':frame'],
                                                     found['tf'] + found['tf:frame'])
            gaps = '%d | %.1e / %.1e / %.1e' % (differ, box, mark, score)
        else:
            gaps = '- | -'
        print('| %s | %s | %s |' % (kind, ' | '.join(cells), ' | '.join([faces, gaps])))
    if args.stages:
        for kind, det in detectors.items():
            clock = StageClock(det._graph if kind == 'tf' else det.networks)
            wall, _ = _timed(lambda: [det.detect_batch(images[i:i + args.batch])
                                      for i in range(0, len(images), args.batch)])
            print('%s stages, ms/image in batches: %s; outside the networks %.1f'
                  % (kind, ', '.join('%s %.1f' % (n, s * 1000 / len(images)) for n, s in clock.seconds.items()),
                     (wall - sum(clock.seconds.values())) * 1000 / len(images)))


if __name__ == '__main__':
    main()
