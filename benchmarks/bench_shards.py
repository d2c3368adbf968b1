"""Benchmark: align N LFW images with 1 and 2 shard processes on one output folder, then export their
embeddings; whole tools timed as a cluster task runs them (process start-up included).

    python benchmarks/bench_shards.py [--images 2000] [--shards 1 2] [--model ~/work/models/20170512-110547.pb]

The first N images of ../shared/data/lfw_deepfunneled (classes in name order) are linked into a
temporary dataset. For each shard count K, K processes of align_dataset_mtcnn.py --shard i/K start
together; the figure is N / (time until the last one ends). Then export_embeddings.py embeds the
aligned faces with the model (one process). The load average is printed beside each figure: other
jobs on the machine slow every figure down.
"""
import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time

from _paths import ROOT, SHARED

LFW = os.path.join(SHARED, 'data', 'lfw_deepfunneled')
ALIGN = os.path.join(ROOT, 'src', 'align', 'align_dataset_mtcnn.py')
EXPORT = os.path.join(ROOT, 'src', 'export_embeddings.py')


def link_images(folder, n):
    """Symlink the first n images of LFW (classes in name order, all images of a class) into
    folder/<class>/; returns how many."""
    count = 0
    for person in sorted(os.listdir(LFW)):
        if count >= n:
            break
        os.makedirs(os.path.join(folder, person))
        for name in sorted(os.listdir(os.path.join(LFW, person)))[:n - count]:
            os.symlink(os.path.join(LFW, person, name), os.path.join(folder, person, name))
            count += 1
    return count


def _children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_together(commands):
    """(wall seconds until every command has ended, CPU seconds they used); stops on a failure."""
    t0, c0 = time.time(), _children_cpu()
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for cmd in commands]
    outputs = [p.communicate()[0] for p in procs]
    wall, cpu = time.time() - t0, _children_cpu() - c0
    for p, out in zip(procs, outputs):
        if p.returncode != 0:
            sys.exit('bench_shards: a command failed:\n%s' % out)
    return wall, cpu, outputs


def load():
    return '%.2f' % os.getloadavg()[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--images', type=int, default=2000)
    parser.add_argument('--shards', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--model', default=os.path.expanduser('~/work/models/20170512-110547.pb'),
                        help='model for the export ("" to skip it)')
    parser.add_argument('--batch_size', type=int, default=100)
    args = parser.parse_args()
    if not os.path.isdir(LFW):
        sys.exit('bench_shards: ../shared/data/lfw_deepfunneled not found')
    tmp = tempfile.mkdtemp(prefix='bench_shards_')
    try:
        src = os.path.join(tmp, 'in')
        n = link_images(src, args.images)
        print('%d images of %d classes; %d cores' % (n, len(os.listdir(src)), len(os.sched_getaffinity(0))))
        aligned = None
        for count in args.shards:
            out = os.path.join(tmp, 'aligned_%d' % count)
            base = [sys.executable, ALIGN, src, out, '--image_size', '160', '--margin', '32']
            commands = [base] if count == 1 else [base + ['--shard', '%d/%d' % (i, count)] for i in range(count)]
            before = load()
            wall, cpu, _ = run_together(commands)
            print('align, %d shard process%s: %d images in %.1f s = %.1f img/s (CPU %.1f ms an image; '
                  'load %s before, %s after)' % (count, '' if count == 1 else 'es', n, wall, n / wall,
                                                 1000 * cpu / n, before, load()))
            aligned = out
        if args.model:
            before = load()
            wall, cpu, outputs = run_together([[sys.executable, EXPORT, args.model, aligned,
                                                os.path.join(tmp, 'emb.h5'), '--batch_size', str(args.batch_size)]])
            steady = re.search(r'export: \d+ img in \S+ \(([\d.]+) img/s\)', outputs[0])
            print('export (%s): %d images in %.1f s = %.1f img/s for the whole tool, %s img/s embedding '
                  '(CPU %.1f ms an image; load %s before, %s after)'
                  % (os.path.basename(args.model), n, wall, n / wall, steady.group(1) if steady else '?',
                     1000 * cpu / n, before, load()))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main()
