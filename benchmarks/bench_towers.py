"""Training throughput on one machine of 1 vs 2 towers (--num_gpus, logical CPU devices here) and of
1 vs 2 workers of a local parameter-server cluster (TF_CONFIG, synchronous updates): train_softmax.py
on synthetic 4-class images with the small network, each configuration as its own process(es);
images/s of the last epoch (a cluster: the sum over its workers).

Usage: python benchmarks/bench_towers.py [--image_size 64] [--batch_size 64] [--epoch_size 20]
           [--epochs 2] [--model_def models.small_cnn]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
from _paths import ROOT
from PIL import Image

from facenet_tf.training import distributed

SCRIPT = os.path.join(ROOT, 'src', 'train_softmax.py')


def write_images(folder, size, classes=4, per_class=16):
    rng = np.random.RandomState(0)
    for c in range(classes):
        os.makedirs(os.path.join(folder, 'c%d' % c))
        colour = rng.uniform(40, 215, 3)
        for i in range(per_class):
            pixels = np.clip(colour + rng.normal(0, 40, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(os.path.join(folder, 'c%d' % c, '%d.png' % i))


def command(args, data, work, extra):
    return [sys.executable, SCRIPT, '--data_dir', data, '--logs_base_dir', os.path.join(work, 'logs'),
            '--models_base_dir', os.path.join(work, 'models'), '--model_def', args.model_def,
            '--image_size', str(args.image_size), '--batch_size', str(args.batch_size),
            '--epoch_size', str(args.epoch_size), '--max_nrof_epochs', str(args.epochs), '--embedding_size', '128',
            '--loss', 'cosface', '--optimizer', 'MOM', '--learning_rate', '0.01',
            '--nrof_preprocess_threads', '2'] + extra


def last_rate(output):
    """The img/s of the last epoch summary line of a training log."""
    rates = re.findall(r'Epoch \d+: .*?\(([\d.]+) img/s\)', output)
    if not rates:
        raise RuntimeError('no epoch summary in:\n' + output[-2000:])
    return float(rates[-1])


def towers(args, data, work, n):
    out = subprocess.run(command(args, data, os.path.join(work, 'towers%d' % n), ['--num_gpus', str(n)]),
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return last_rate(out)


def cluster(args, data, work, nrof_workers):
    ports = distributed.free_local_ports(nrof_workers + 1)
    spec = {'ps': ['localhost:%d' % ports[0]], 'worker': ['localhost:%d' % p for p in ports[1:]]}
    tasks = [('ps', 0)] + [('worker', i) for i in range(nrof_workers)]
    processes = []
    try:
        for task_type, index in tasks:
            env = dict(os.environ, TF_CONFIG=json.dumps({'cluster': spec, 'task': {'type': task_type, 'index': index}}))
            extra = ['--run_name', 'cluster']
            processes.append(subprocess.Popen(command(args, data, os.path.join(work, 'workers%d' % nrof_workers),
                                                      extra), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                              stderr=subprocess.STDOUT, text=True))
        rates = [last_rate(p.communicate(timeout=1800)[0]) for p in processes[1:]]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()
    return sum(rates)


def main(args):
    with tempfile.TemporaryDirectory() as work:
        data = os.path.join(work, 'train')
        write_images(data, args.image_size)
        print('%s at %d px, batch %d, %d epochs of %d steps (rate of the last epoch)'
              % (args.model_def, args.image_size, args.batch_size, args.epochs, args.epoch_size))
        for n in (1, 2):
            print('towers  %d: %6.1f img/s' % (n, towers(args, data, work, n)), flush=True)
        for n in (1, 2):
            print('workers %d: %6.1f img/s (1 ps, sync updates)' % (n, cluster(args, data, work, n)), flush=True)


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--image_size', type=int, default=64)
    parser.add_argument('--batch_size', type=int, default=64)
    parser.add_argument('--epoch_size', type=int, default=20)
    parser.add_argument('--epochs', type=int, default=2)
    parser.add_argument('--model_def', type=str, default='models.small_cnn')
    return parser.parse_args(argv)


if __name__ == '__main__':
    main(parse_arguments())
