"""Benchmark: the MTCNN detector on TensorFlow, onnxruntime and TFLite (same cascade), and its faces.

Times per 250x250 LFW image (the first --images of the 300 reference images, in batches of
--batch as the aligner detects them, and one image at a time as compare/the API do) and per 1280x720
frame (the group photo detection_photos/multiface.jpg resized), as wall time and as CPU time of this
process (the fair figure on a shared machine); the best of --repeat interleaved rounds (other
processes only ever add time). Then the faces against TensorFlow's: images whose face count differs,
largest box / landmark / score gap. With --stages, where the time goes in batches: pyramids, each
network, the crops for RNet/ONet, and the rest of the cascade (boxes, NMS, PNet inputs).

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
    """Adds up the wall and CPU time of named callables (a detector's networks, the cascade's crop
    and input steps) while it is installed; uninstall() puts the originals back."""

    def __init__(self):
        self.seconds = {}
        self.installed = []

    def install(self, holder, names, label=None):
        for name in names:
            original = getattr(holder, name)
            self.installed.append((holder, name, original))
            setattr(holder, name, self._wrap(label or name, original))

    def uninstall(self):
        for holder, name, original in reversed(self.installed):
            setattr(holder, name, original)
        self.installed = []

    def _wrap(self, name, fn):
        box = []   # the result of the timed call

        def run(*args, **kw):
            wall, cpu = _timed(lambda: box.append(fn(*args, **kw)))
            total = self.seconds.get(name, (0.0, 0.0))
            self.seconds[name] = (total[0] + wall, total[1] + cpu)
            return box.pop()
        return run


def stage_breakdown(det, kind, images, batch):
    """{stage: (wall, CPU) seconds} of detecting `images` in batches: pyramids, PNet, RNet, ONet,
    crops (RNet/ONet inputs: cropping, resizing, scaling) and the rest (boxes, NMS, PNet inputs)."""
    from facenet_tf.align import mtcnn_boxes
    clock = StageClock()
    clock.install(det._graph if kind == 'tf' else det.networks, ('pnet', 'rnet', 'onet'))
    clock.install(mtcnn_boxes, ('crop_boxes', 'network_input'), 'crops')
    try:
        pyramids = []
        clock.seconds['pyramids'] = _timed(lambda: pyramids.extend(det.pyramid(img) for img in images))
        total = _timed(lambda: [det.detect_batch(pyramids[i:i + batch]) for i in range(0, len(pyramids), batch)])
    finally:
        clock.uninstall()
    inside = [sum(v[k] for n, v in clock.seconds.items() if n != 'pyramids') for k in (0, 1)]
    clock.seconds['rest'] = (total[0] - inside[0], total[1] - inside[1])
    return clock.seconds


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
    load = os.getloadavg()[0]
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
    print('load average (1 min) %.1f at the start, %.1f at the end' % (load, os.getloadavg()[0]))
    print('%d LFW images (250x250), batches of %d; 1280x720 frame: multiface.jpg resized; best of %d '
          'interleaved rounds (wall and CPU each); threads %s'
          % (len(images), args.batch, args.repeat, args.threads or 'all'))
    print('| detector | ms/image, batches (wall / CPU) | ms/image, one at a time (wall / CPU) | '
          'ms/1280x720 frame (wall / CPU) | faces (LFW, frame) | images with another count | '
          'max box / landmark / score gap vs TF |')
    print('| --- | --- | --- | --- | --- | --- | --- |')
    base = rows['tf'] if 'tf' in rows else None
    for kind in detectors:
        cells = []
        for mode in ('batch', 'one', 'frame'):
            wall, cpu = np.min(np.array(rows[kind][mode]), axis=0) * 1000
            speed = ''
            if base is not None and kind != 'tf':
                ref_cpu = np.min(np.array(base[mode]), axis=0)[1] * 1000
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
        print('Stages in batches of %d, ms per image (wall / CPU), best of %d rounds:' % (args.batch, args.repeat))
        order = ('pyramids', 'pnet', 'rnet', 'onet', 'crops', 'rest')
        best = {}
        for _ in range(args.repeat):
            for kind, det in detectors.items():
                for name, (wall, cpu) in stage_breakdown(det, kind, images, args.batch).items():
                    old = best.get((kind, name), (np.inf, np.inf))
                    best[(kind, name)] = (min(old[0], wall), min(old[1], cpu))
        print('| detector | %s | networks | outside the networks |' % ' | '.join(order))
        print('| --- |' + ' --- |' * (len(order) + 2))
        for kind in detectors:
            ms = {n: np.array(best[(kind, n)]) * 1000 / len(images) for n in order}
            nets = sum(ms[n] for n in ('pnet', 'rnet', 'onet'))
            outside = sum(ms[n] for n in ('pyramids', 'crops', 'rest'))
            print('| %s | %s |' % (kind, ' | '.join('%.1f / %.1f' % tuple(v) for v in
                                                   [ms[n] for n in order] + [nets, outside])))


if __name__ == '__main__':
    main()
