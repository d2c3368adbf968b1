"""The embedding model in every exported format, side by side on the same LFW crops in one run.

Usage: python benchmarks/bench_formats.py [--model FOLDER_OR_PB] [--lfw_dir DIR] [--lfw_pairs FILE]
           [--folds 10] [--work DIR] [--calibration 64] [--rows tf_fp32,tflite_int8,...]

Exports the model once into --work (TensorFlow Lite fp32/fp16/dynamic/int8, ONNX fp32/int8; a file
already there is reused), then measures each row in a child process of its own (so its peak memory is
its own): images/s at batch 1 and batch 64 on real crops, then the embeddings of every image of the
first --folds folds of the pairs file. The parent prints one markdown table: LFW accuracy and
VAL@FAR=1e-3 (10-fold protocol of validate_on_lfw.py, Euclidean distance, no flips), the largest and
the mean L2 distance between each image's embedding and the TensorFlow fp32 one, throughput, file size
and peak resident memory (the child's, TensorFlow's import included); --throughput_only skips the LFW
pass. The CPU's model name and flags head the output. docs/deployment.md holds the runs.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

from _paths import SHARED
from _machine import cpu_line

import numpy as np

ROWS = ('tf_fp32', 'tf_bf16', 'tflite_fp32', 'tflite_fp16', 'tflite_dynamic', 'tflite_int8', 'onnx_fp32', 'onnx_int8')
FILES = {'tflite_fp32': 'tflite_none.tflite', 'tflite_fp16': 'tflite_fp16.tflite',
         'tflite_dynamic': 'tflite_dynamic.tflite', 'tflite_int8': 'tflite_int8.tflite',
         'onnx_fp32': 'onnx_fp32.onnx', 'onnx_int8': 'onnx_int8.onnx'}



def export_all(model, work, lfw_dir, calibration):
    """The frozen .pb and every exported file in `work` (made when absent); {row: path}."""
    from facenet_tf import model_io
    from facenet_tf.export_onnx import export_onnx, quantize_onnx
    from facenet_tf.export_tflite import representative_crops
    pb = model if os.path.isfile(model) else os.path.join(work, 'model.pb')
    if not os.path.exists(pb):
        model_io.freeze_model(model, pb)
    paths = {'tf_fp32': pb, 'tf_bf16': pb}
    crops = None
    for row, name in FILES.items():
        path = paths[row] = os.path.join(work, name)
        if os.path.exists(path):
            continue
        if row.endswith('int8') and crops is None:
            crops = representative_crops(lfw_dir, 160, calibration)
        start = time.time()
        if row.startswith('tflite'):
            model_io.export_tflite(pb, path, 160, name.split('_')[1].split('.')[0], crops)
        elif row == 'onnx_fp32':
            export_onnx(pb, path)
        else:
            fp32 = paths.get('onnx_fp32') or os.path.join(work, FILES['onnx_fp32'])
            if not os.path.exists(fp32):
                export_onnx(pb, fp32)
            quantize_onnx(fp32, path, crops)
        sys.stderr.write('exported %s in %.0f s\n' % (path, time.time() - start))
    return paths


def subset_pairs(pairs_file, folds, work):
    """A pairs file of the first `folds` folds of a View 2 file (its header 'folds<TAB>n')."""
    with open(pairs_file) as f:
        lines = f.read().splitlines()
    total, per = (int(x) for x in lines[0].split())
    if folds >= total:
        return pairs_file
    path = os.path.join(work, 'pairs_%d_folds.txt' % folds)
    with open(path, 'w') as f:
        f.write('%d\t%d\n' % (folds, per) + '\n'.join(lines[1:1 + folds * 2 * per]) + '\n')
    return path


def child(args):
    """One row: throughput at batch 1 and 64, then the embeddings of the items; a JSON line on stdout."""
    from facenet_tf import embedding, runtimes
    from facenet_tf.embedding import ImageBatches
    with open(args.items) as f:
        items = f.read().splitlines()
    precision = 'bf16' if args.child == 'tf_bf16' else 'fp32'
    with runtimes.open_model(args.model, precision=precision, image_size=160) as runner:
        reader = ImageBatches(160, 64)
        crops = next(iter(reader(items[:64])))
        reader.close()
        rates = {}
        for batch, calls in ((64, args.calls64), (1, 64)):
            for k in range(3):
                runner.embed(crops[:batch])
            start = time.perf_counter()
            for k in range(calls):
                runner.embed(crops[(k * batch) % 64:(k * batch) % 64 + batch])
            rates[batch] = batch * calls / (time.perf_counter() - start)
        emb = None if args.throughput_only else embedding.embed(runner, items, image_size=160, batch_size=64,
                                                                label=args.child)
    if emb is not None:
        np.save(args.out, emb)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({'rate1': rates[1], 'rate64': rates[64], 'peak': peak}))


def measure(row, model, items_file, work, calls64, throughput_only):
    out = os.path.join(work, row + '.npy')
    r = subprocess.run([sys.executable, os.path.abspath(__file__), '--child', row, '--model', model,
                        '--items', items_file, '--out', out, '--calls64', str(calls64)]
                       + ['--throughput_only'] * throughput_only, stdout=subprocess.PIPE, universal_newlines=True)
    if r.returncode:
        raise SystemExit('%s failed (exit %d)' % (row, r.returncode))
    result = json.loads(r.stdout.strip().splitlines()[-1])
    result['emb'] = None if throughput_only else np.load(out)
    return result


def main(args):
    if args.child:
        return child(args)
    from facenet_tf import evaluation, tf_setup
    tf_setup.configure()
    from facenet_tf.verification_sets import load_verification_set
    os.makedirs(args.work, exist_ok=True)
    paths = export_all(os.path.expanduser(args.model), args.work, args.lfw_dir, args.calibration)
    vset = load_verification_set(args.lfw_dir, subset_pairs(args.lfw_pairs, args.folds, args.work), args.folds)
    items_file = os.path.join(args.work, 'items.txt')
    with open(items_file, 'w') as f:
        f.write('\n'.join(vset.items) + '\n')
    print('CPU: %s' % cpu_line())
    print('%d pairs (%d folds), %d images; calibration: %d crops of %s\n'
          % (vset.issame.size, args.folds, len(vset.items), args.calibration, args.lfw_dir))
    print('| format | precision | LFW accuracy | VAL@FAR=1e-3 | max / mean L2 diff to TF fp32 | img/s batch 1 '
          '| img/s batch 64 | file MB | peak RSS MB |')
    print('| --- | --- | --- | --- | --- | --- | --- | --- | --- |')
    reference = None
    for row in args.rows.split(','):
        result = measure(row, paths[row], items_file, args.work, args.calls64, args.throughput_only)
        kind, precision = row.split('_')
        figures = ['-', '-', '-']
        if result['emb'] is not None:
            emb = result['emb'].astype(np.float64)
            reference = emb if reference is None else reference
            _, _, accuracy, val, _, far = evaluation.evaluate(emb[vset.where], vset.issame, nrof_folds=args.folds,
                                                              folds=vset.folds)
            diff = np.linalg.norm(emb - reference, axis=1)
            figures = ['%.4f+-%.4f' % (np.mean(accuracy), np.std(accuracy)), '%.4f @ %.5f' % (val, far),
                       '%.2e / %.2e' % (diff.max(), diff.mean())]
        print('| %s | %s | %s | %s | %s | %.1f | %.1f | %.1f | %.0f |'
              % tuple([{'tf': 'TensorFlow', 'tflite': 'TFLite', 'onnx': 'onnxruntime'}[kind], precision] + figures
                      + [result['rate1'], result['rate64'], os.path.getsize(paths[row]) / 1e6, result['peak'] / 1e6]))
        sys.stdout.flush()
    return 0


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', default='~/.cache/facenet-tf1compat/models/20170512-110547',
                        help='A checkpoint folder or frozen .pb (default: the published 128-D model).')
    parser.add_argument('--lfw_dir', default='~/datasets/lfw/lfw_mtcnnpy_160', help='Aligned LFW crops (160x160; the quick start\'s folder).')
    parser.add_argument('--lfw_pairs', default=os.path.join(SHARED, 'data', 'lfw_protocol', 'pairs.txt'))
    parser.add_argument('--folds', type=int, choices=range(2, 11), default=10, metavar='2-10',
                        help='The first this many folds of the pairs file (default 10: all of View 2).')
    parser.add_argument('--work', default='/tmp/bench_formats', help='Where the exported files are kept.')
    parser.add_argument('--calibration', type=int, default=64, help='Crops the int8 models are calibrated on.')
    parser.add_argument('--calls64', type=int, default=5, help='Timed batch-64 calls per row.')
    parser.add_argument('--rows', default=','.join(ROWS), help='Rows, the first is the reference.')
    parser.add_argument('--throughput_only', action='store_true',
                        help='Only images/s, file size and peak memory (no LFW pass).')
    parser.add_argument('--child', default='', help=argparse.SUPPRESS)
    parser.add_argument('--items', default='', help=argparse.SUPPRESS)
    parser.add_argument('--out', default='', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.lfw_dir = os.path.expanduser(args.lfw_dir)
    return args


if __name__ == '__main__':
    sys.exit(main(parse_arguments(sys.argv[1:])))
