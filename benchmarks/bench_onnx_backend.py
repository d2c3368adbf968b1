"""TensorFlow fp32 against `--backend onnx` (onnxruntime fp32 on the cached conversion) on one model.

Usage: python benchmarks/bench_onnx_backend.py [--model FOLDER_OR_PB] [--rounds 3] [--calls64 3]
           [--calls1 16] [--images 64]

Converts the model into the ONNX cache first when it is not there (onnx_cache.cached_onnx; the time
is printed). Then --rounds interleaved rounds (the order alternates), each running both backends,
runtimes.open_model(backend='tf' / 'onnx'), in a child process of its own on the same real crops (the
central 160x160 of LFW deep-funneled photos, prewhitened): the open's time (the cached file is
reused), then --calls64 calls at batch 64 and --calls1 calls at batch 1 after one warm-up call each.
Prints the CPU, the load average, one table row per round and backend (images/s, onnx / tf) and the
largest L2 distance between the two backends' embeddings. docs/deployment.md ("onnxruntime as the
backend") holds the runs.
"""
import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from _paths import SHARED
from _machine import cpu_line

import numpy as np


def crops(count):
    """`count` prewhitened 160x160 crops from the middle of the first LFW photos (sorted)."""
    from facenet_tf import images
    paths = sorted(glob.glob(os.path.join(SHARED, 'data', 'lfw_deepfunneled', '*', '*.jpg')))[:count]
    out = []
    for path in paths:
        rgb = images.read_rgb(path)
        top, left = (rgb.shape[0] - 160) // 2, (rgb.shape[1] - 160) // 2
        out.append(images.prewhiten(rgb[top:top + 160, left:left + 160].astype(np.float32)))
    return np.stack(out).astype(np.float32)


def images_per_second(embedder, batch, calls):
    """Images/s of `calls` timed calls on `batch`, after one warm-up call."""
    embedder.embed(batch)
    start = time.perf_counter()
    for _ in range(calls):
        embedder.embed(batch)
    return calls * len(batch) / (time.perf_counter() - start)


def child(args):
    """One backend in this process: its rates at batch 64 and 1 as a JSON line, its embeddings saved."""
    from facenet_tf import tf_setup
    tf_setup.configure()
    from facenet_tf.runtimes import open_model
    batch = crops(args.images)
    start = time.perf_counter()
    with open_model(os.path.expanduser(args.model), backend=args.child) as embedder:
        opened = time.perf_counter() - start
        np.save(args.out, embedder.embed(batch))
        rates = (images_per_second(embedder, batch[:64], args.calls64),
                 images_per_second(embedder, batch[:1], args.calls1))
    print(json.dumps({'open': opened, 'rates': rates}))
    return 0


def measure(backend, args, out):
    """Run one backend in a child process of its own; its JSON result."""
    argv = [sys.executable, os.path.abspath(__file__), '--child', backend, '--out', out, '--model', args.model,
            '--calls64', str(args.calls64), '--calls1', str(args.calls1), '--images', str(args.images)]
    result = subprocess.run(argv, stdout=subprocess.PIPE, universal_newlines=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(args):
    if args.child:
        return child(args)
    from facenet_tf import tf_setup
    tf_setup.configure()
    from facenet_tf.onnx_cache import cached_onnx, cached_path
    model = os.path.expanduser(args.model)
    present = os.path.isfile(cached_path(model))
    start = time.perf_counter()
    cached_onnx(model)
    conversion = 'reused' if present else 'converted in %.1f s' % (time.perf_counter() - start)
    print('CPU: %s' % cpu_line())
    print('model %s; ONNX conversion %s' % (args.model, conversion))
    print('load average before: %.2f %.2f %.2f' % os.getloadavg())
    print()
    print('| round | backend | open s | img/s batch 64 | img/s batch 1 | onnx / tf batch 64 | onnx / tf batch 1 |')
    print('| --- | --- | --- | --- | --- | --- | --- |')
    work = tempfile.mkdtemp(prefix='bench_onnx_backend_')
    diffs = []
    try:
        for k in range(args.rounds):
            results = {}
            for backend in ('tf', 'onnx') if k % 2 == 0 else ('onnx', 'tf'):
                results[backend] = measure(backend, args, os.path.join(work, backend + '.npy'))
            embeddings = {b: np.load(os.path.join(work, b + '.npy')) for b in results}
            diffs.append(float(np.max(np.linalg.norm(embeddings['tf'] - embeddings['onnx'], axis=1))))
            for backend in ('tf', 'onnx'):
                rates = results[backend]['rates']
                ratio = ['%.2f' % (rates[j] / results['tf']['rates'][j]) for j in (0, 1)]
                print('| %d | %s | %.1f | %.1f | %.1f | %s | %s |'
                      % (k + 1, backend, results[backend]['open'], rates[0], rates[1], ratio[0], ratio[1]))
            sys.stdout.flush()
    finally:
        shutil.rmtree(work)
    print()
    print('load average after: %.2f %.2f %.2f' % os.getloadavg())
    print('largest L2 difference between the backends\' embeddings of %d crops: %.2e' % (args.images, max(diffs)))
    return 0


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', default='~/.cache/facenet-tf1compat/models/20170512-110547',
                        help='A checkpoint folder or frozen .pb (default: the published 128-D model).')
    parser.add_argument('--rounds', type=int, default=3, help='Interleaved rounds.')
    parser.add_argument('--calls64', type=int, default=3, help='Timed batch-64 calls per round and backend.')
    parser.add_argument('--calls1', type=int, default=16, help='Timed batch-1 calls per round and backend.')
    parser.add_argument('--images', type=int, default=64, help='LFW photos read (at least 64).')
    parser.add_argument('--child', default='', help=argparse.SUPPRESS)
    parser.add_argument('--out', default='', help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == '__main__':
    sys.exit(main(parse_arguments(sys.argv[1:])))
