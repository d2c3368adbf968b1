"""Tiny real-face training sets shared by the training-script tests (not a test module)."""
import glob
import os

import tensorflow as tf
from PIL import Image


def _shrink(src, dst, size=36):
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    with Image.open(src) as img:
        img.convert('RGB').resize((size, size), Image.BILINEAR).save(dst)


def make_faces(data_dir, root):
    """Six ORL people (6 images each) in root/train and a 20-pair View-1 style LFW subset in root/lfw
    with root/pairs.txt, all shrunk to 36 px."""
    for person in range(1, 7):
        for i in range(1, 7):
            _shrink(os.path.join(data_dir, 'orl_faces', 's%d' % person, '%d.png' % i),
                    str(root / 'train' / ('s%d' % person) / ('%d.png' % i)))
    with open(os.path.join(data_dir, 'lfw_protocol', 'pairsDevTest.txt')) as f:
        lines = f.read().splitlines()
    pairs = lines[1:11] + lines[501:511]
    for line in pairs:
        p = line.split()
        names = [(p[0], p[1]), (p[0], p[2])] if len(p) == 3 else [(p[0], p[1]), (p[2], p[3])]
        for name, num in names:
            stem = '%s_%04d' % (name, int(num))
            _shrink(os.path.join(data_dir, 'lfw_deepfunneled', name, stem + '.jpg'),
                    str(root / 'lfw' / name / (stem + '.png')))
    (root / 'pairs.txt').write_text('10\n' + '\n'.join(pairs) + '\n')
    return root


def run_training(script, data, tmp, argv):
    """script.main on data with run folders under tmp; returns (exit code, model dir, log dir)."""
    args = script.parse_arguments(['--data_dir', str(data), '--logs_base_dir', str(tmp / 'logs'),
                                   '--models_base_dir', str(tmp / 'models')] + list(argv))
    code = script.main(args)
    (model_dir,) = glob.glob(str(tmp / 'models' / '*'))
    (log_dir,) = glob.glob(str(tmp / 'logs' / '*'))
    return code, model_dir, log_dir


def event_tags(log_dir):
    """The summary tags written to a run's TensorBoard event files."""
    tags = set()
    for path in glob.glob(os.path.join(log_dir, 'events.out.tfevents.*')):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(v.tag for v in event.summary.value)
    return tags
