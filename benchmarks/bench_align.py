"""Benchmark: align the 300 reference LFW images (250x250) end to end and print images/s.

Reads ../shared/reference/mtcnn/lfw_devtrain300_list.txt, links those images into a temporary
dataset folder and runs the dataset aligner (read, detect, crop, write PNG) with --image_size 160
--margin 32. Prints the rate with and without the one-time detector start-up.

    python benchmarks/bench_align.py [--num_workers N] [--repeat K] [--images N] [--detector tf|onnx|tflite]
"""
import argparse
import os
import resource
import shutil
import sys
import tempfile
import time

from _paths import SHARED

LIST = os.path.join(SHARED, 'reference', 'mtcnn', 'lfw_devtrain300_list.txt')
LFW = os.path.join(SHARED, 'data', 'lfw_deepfunneled')


def link_dataset(folder, count=None):
    """Symlink the first `count` (None: all) listed images into folder/<class>/<file>; returns how many."""
    with open(LIST) as f:
        paths = [line.strip() for line in f if line.strip()][:count]
    for rel in paths:
        cls, name = rel.split('/')
        os.makedirs(os.path.join(folder, cls), exist_ok=True)
        os.symlink(os.path.join(LFW, rel), os.path.join(folder, cls, name))
    return len(paths)


def _cpu_seconds():
    """CPU time of this process and its finished children: comparable on a shared machine."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _cores():
    return len(os.sched_getaffinity(0))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--num_workers', type=int, default=1)
    parser.add_argument('--repeat', type=int, default=2, help='timed runs (the best is reported)')
    parser.add_argument('--images', type=int, default=None, help='the first N listed images (default: all 300)')
    parser.add_argument('--detector', choices=('tf', 'onnx', 'tflite'), default='tf')
    args = parser.parse_args()
    if not os.path.isfile(LIST):
        sys.exit('bench_align: ../shared reference data not found')
    from facenet_tf import tf_setup
    tf_setup.configure()
    from facenet_tf.align import alignment_plan, batch_alignment
    opts = batch_alignment.Options(160, 32, False, False, detector=args.detector)
    tmp = tempfile.mkdtemp(prefix='bench_align_')
    try:
        n = link_dataset(os.path.join(tmp, 'in'), args.images)
        best_e2e = best_steady = 0.0
        for rep in range(args.repeat):
            out = os.path.join(tmp, 'out%d' % rep)
            os.makedirs(out)
            t0, c0 = time.time(), _cpu_seconds()
            jobs = alignment_plan.plan(os.path.join(tmp, 'in'), out, False, False).jobs
            done, first = 0, None
            for results in batch_alignment.results_of(jobs, opts, args.num_workers):
                done += len(results)
                if first is None:
                    first = (time.time(), done)
            t1, c1 = time.time(), _cpu_seconds()
            e2e = done / (t1 - t0)
            steady = (done - first[1]) / max(t1 - first[0], 1e-9)
            print('run %d: %d images in %.2f s: %.1f img/s including start-up, %.1f img/s after the '
                  'first batch; CPU %.1f ms an image (%.1f img/s if %d cores were all ours)'
                  % (rep + 1, done, t1 - t0, e2e, steady, 1000 * (c1 - c0) / done,
                     _cores() * done / (c1 - c0), _cores()))
            best_e2e, best_steady = max(best_e2e, e2e), max(best_steady, steady)
        print('bench_align: %d images, detector %s, num_workers %d: best %.1f img/s end to end, %.1f img/s '
              'steady' % (n, args.detector, args.num_workers, best_e2e, best_steady))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main()
