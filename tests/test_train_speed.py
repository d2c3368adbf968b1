"""What the triplet tool does for its speed, on a short real run (small network, ORL faces): the
scalar summaries every SCALAR_SUMMARY_STEPS steps (2 here instead of 20) fetched with every step,
the histograms only on an epoch's last step, and the log lines the classic comparison
(benchmarks/bench_train_classic.py) reads: the selection forward pass and the seconds spent in
training steps."""
import collections
import contextlib
import glob
import os
import re

import pytest
import tensorflow as tf

from facenet_tf import train_triplet
from facenet_tf.training import triplet_tool
from training_faces import make_faces, run_training

STEPS = 5
EVERY = 2


@pytest.fixture(scope='module')
def run(data_dir, tmp_path_factory):
    """One epoch of STEPS steps, scalars every EVERY; returns (exit code, stdout, {step: {(tag, kind)}})."""
    faces = make_faces(data_dir, tmp_path_factory.mktemp('faces'))
    tmp = tmp_path_factory.mktemp('run')
    capture = tmp / 'out.txt'
    with pytest.MonkeyPatch.context() as patch, open(capture, 'w') as f, contextlib.redirect_stdout(f):
        patch.setattr(triplet_tool, 'SCALAR_SUMMARY_STEPS', EVERY)
        code, _, log_dir = run_training(train_triplet, faces / 'train', tmp, [
            '--model_def', 'models.small_cnn', '--image_size', '32', '--batch_size', '12',
            '--people_per_batch', '4', '--images_per_person', '4', '--epoch_size', str(STEPS),
            '--max_nrof_epochs', '1', '--nrof_preprocess_threads', '2', '--embedding_size', '16', '--seed', '1',
            '--alpha', '1.0'])
    written = collections.defaultdict(set)
    for path in glob.glob(os.path.join(log_dir, 'events.out.tfevents.*')):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                written[event.step].add((value.tag, value.WhichOneof('value')))
    return code, capture.read_text(), written


def test_scalars_every_n_steps_and_histograms_on_the_last_step(run):
    code, _, written = run
    assert code == 0
    histogram_steps = {step for step, values in written.items() if any(kind == 'histo' for _, kind in values)}
    assert histogram_steps == {STEPS}
    loss_steps = {step for step, values in written.items() if ('total_loss__raw_', 'simple_value') in values}
    assert loss_steps == {2, 4, STEPS}
    histograms = {tag for tag, kind in written[STEPS] if kind == 'histo'}
    assert 'SmallCNN/Bottleneck/weights/gradients' in histograms
    assert any(tag.startswith('SmallCNN/Bottleneck/weights') and 'gradients' not in tag for tag in histograms)
    assert not any(kind == 'histo' for _, kind in written[2] | written[4])


def test_log_gives_the_forward_pass_and_the_step_time(run):
    _, out, _ = run
    forward = [float(x) for x in re.findall(r'^Running forward pass on sampled images: ([\d.]+)$', out, re.M)]
    selected = re.findall(r'^Selected (\d+) triplets from \d+ anchor-positive pairs', out, re.M)
    assert len(forward) == len(selected) >= 1 and all(x > 0 for x in forward)
    found = re.search(r'^Epoch 0: %d steps, (\d+) images in ([\d.]+) s \([\d.]+ img/s\), ([\d.]+) s in training '
                      r'steps \(([\d.]+) s the first\), mean loss [\d.]+$' % STEPS, out, re.M)
    assert found, out[-2000:]
    images, epoch_seconds, step_seconds, first = (int(found.group(1)), float(found.group(2)), float(found.group(3)),
                                                  float(found.group(4)))
    assert STEPS <= images <= 12 * STEPS
    assert 0 < first < step_seconds <= epoch_seconds + 0.1
