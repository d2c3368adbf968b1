"""A training run is never overwritten and a killed one continues: each training script killed with
SIGKILL mid-epoch leaves only complete files (the `checkpoint` state files, stat.h5, the event
files), running the same command again is refused in one line naming --resume, and --resume ends
at the step, epoch and checkpoints of an uninterrupted run with the loss going on from where it was."""
import concurrent.futures
import glob
import os
import re
import signal
import subprocess
import sys
import threading

import h5py
import numpy as np
import pytest
import tensorflow as tf

from facenet_tf import train_softmax
from facenet_tf import train_triplet as train_tripletloss
from facenet_tf.training import checkpoints
from hostile import ROOT, assert_one_line_error, run_main, script_path, tree_hashes
from training_faces import make_faces

SIZE = 32
EPOCHS = 2
EPOCH_SIZE = 8
COMMON = ['--model_def', 'models.small_cnn', '--image_size', str(SIZE), '--batch_size', '12', '--seed', '1',
          '--nrof_preprocess_threads', '1', '--embedding_size', '16', '--max_nrof_epochs', str(EPOCHS),
          '--run_name', 'r1']
# the rate changes at the epoch killed (softmax epochs count from 1, triplet epochs from 0): the
# continued run must take up the schedule's position
SOFTMAX = COMMON + ['--epoch_size', str(EPOCH_SIZE), '--optimizer', 'ADAM', '--learning_rate', '-1']
SOFTMAX_SCHEDULE = '0: 0.01\n2: 0.002\n'
TRIPLET_SCHEDULE = '0: 0.05\n1: 0.01\n'
TRIPLET = COMMON + ['--epoch_size', str(EPOCH_SIZE), '--optimizer', 'ADAGRAD', '--learning_rate', '-1',
                    '--triplet_mining', 'batch', '--triplet_selection', 'hardest', '--images_per_person', '4']


@pytest.fixture(scope='module')
def faces(data_dir, tmp_path_factory):
    return make_faces(data_dir, tmp_path_factory.mktemp('faces'))


def _argv(faces, tmp, flags, rates=SOFTMAX_SCHEDULE):
    schedule = tmp / 'schedule.txt'
    if not schedule.exists():
        schedule.write_text(rates)
    return ['--data_dir', faces / 'train', '--logs_base_dir', tmp / 'logs', '--models_base_dir', tmp / 'models',
            '--learning_rate_schedule_file', schedule] + flags


def _kill_when(script, argv, pattern, timeout=120):
    """Run the script as a user does and SIGKILL it once a stdout line matches `pattern`; returns
    the lines printed."""
    env = dict(os.environ, PYTHONUNBUFFERED='1', TF_CPP_MIN_LOG_LEVEL='2')
    proc = subprocess.Popen([sys.executable, script_path(script)] + [str(a) for a in argv], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if re.search(pattern, line):
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        watchdog.cancel()
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL and re.search(pattern, lines[-1]), ''.join(lines)
    return lines


def _complete_files(tmp):
    """Every file the killed run left is complete: the checkpoint state files name existing
    checkpoints, stat.h5 opens, every event file reads to its end; no temporary file is left."""
    for folder, _, names in os.walk(tmp):
        for name in names:
            path = os.path.join(folder, name)
            assert not name.endswith('.tmp') and '_temp' not in path, path
            if name == 'checkpoint':
                state = tf.train.get_checkpoint_state(folder)
                assert os.path.isfile(state.model_checkpoint_path + '.index'), path
            elif name == 'stat.h5':
                with h5py.File(path, 'r') as f:
                    assert f['loss'].shape[0] > 0
            elif name.startswith('events.out.tfevents'):
                assert sum(1 for _ in tf.compat.v1.train.summary_iterator(path)) > 0


def _state_step(tmp):
    prefix = checkpoints.latest_state(str(tmp / 'models' / 'r1'))
    return int(tf.train.load_checkpoint(prefix).get_tensor('global_step')), prefix


RUNS = {'softmax': ('train_softmax.py', SOFTMAX, SOFTMAX_SCHEDULE, r'^Epoch: \[2\]\['),
        'triplet': ('train_tripletloss.py', TRIPLET, TRIPLET_SCHEDULE, r'^Epoch: \[1\]\[')}


@pytest.fixture(scope='module')
def killed(faces, tmp_path_factory):
    """Both scripts run as a user runs them, side by side, each killed with SIGKILL in its second
    epoch: {name: (run folder root, argv)}."""
    runs = {}
    with concurrent.futures.ThreadPoolExecutor(len(RUNS)) as pool:
        for name, (script, flags, rates, pattern) in RUNS.items():
            tmp = tmp_path_factory.mktemp(name)
            argv = _argv(faces, tmp, flags, rates)
            runs[name] = (tmp, argv, pool.submit(_kill_when, script, argv, pattern))
    return {name: (tmp, argv, future.result()) for name, (tmp, argv, future) in runs.items()}


def _continue(module, run):
    """Check what a killed run left, refuse the same command, continue it; returns the continued run
    and its first progress line."""
    tmp, argv, _ = run
    _complete_files(tmp)
    assert _state_step(tmp)[0] == EPOCH_SIZE             # the first epoch's training state
    before = tree_hashes(tmp)
    again = run_main(module, argv)
    assert_one_line_error(again, str(tmp / 'models' / 'r1'), 'exists already', '--resume', code=2)
    assert tree_hashes(tmp) == before                     # refused before any work
    resumed = run_main(module, argv + ['--resume'])
    assert resumed.code == 0, resumed
    assert 'Continuing the run from its training state' in resumed.out
    first_line = re.search(r'^Epoch: \[\d+\]\[1/.*$', resumed.out, re.M).group(0)
    assert '\tstep %d\t' % (EPOCH_SIZE + 1) in first_line, resumed.out    # the step after the state
    assert _state_step(tmp)[0] == EPOCHS * EPOCH_SIZE                      # as an uninterrupted run
    _complete_files(tmp)
    return resumed, first_line


def test_softmax_run_killed_mid_epoch_continues(killed):
    tmp_path = killed['softmax'][0]
    resumed, first_line = _continue(train_softmax, killed['softmax'])
    assert first_line.startswith('Epoch: [2][1/') and '\tlr 0.002\t' in first_line
    # epochs numbered from 1 as uninterrupted: the checkpoints of epochs 1 and 2, training done at 2
    assert tf.train.latest_checkpoint(str(tmp_path / 'models' / 'r1')).endswith('model-r1.ckpt-%d' % EPOCHS)
    assert 'Training done: %d epochs' % EPOCHS in resumed.out
    with h5py.File(tmp_path / 'logs' / 'r1' / 'stat.h5', 'r') as f:
        loss, rate = np.array(f['loss']), np.array(f['learning_rate'])
    # the statistics go on: the killed run's first epoch kept, every later step recorded once
    assert np.all(loss > 0) and loss.shape == (EPOCHS * EPOCH_SIZE,)
    np.testing.assert_allclose(rate, [0.01, 0.002])
    assert loss[EPOCH_SIZE] < 0.8 * loss[0], loss                 # not a new start from random weights
    # the summaries are appended: a second event file, starting over at the state's step
    events = sorted(glob.glob(str(tmp_path / 'logs' / 'r1' / 'events.out.tfevents.*')), key=os.path.getmtime)
    assert len(events) == 2
    starts = [e.step for e in tf.compat.v1.train.summary_iterator(events[1])
              if e.HasField('session_log') and e.session_log.status == e.session_log.START]
    assert starts == [EPOCH_SIZE]


def test_triplet_run_killed_mid_epoch_continues(killed):
    tmp_path = killed['triplet'][0]
    resumed, first_line = _continue(train_tripletloss, killed['triplet'])
    assert first_line.startswith('Epoch: [1][1/') and '\tlr 0.01\t' in first_line
    model_dir = tmp_path / 'models' / 'r1'
    numbers = sorted(int(n.split('.ckpt-')[1].split('.')[0]) for n in os.listdir(model_dir) if n.endswith('.index'))
    assert numbers == [EPOCH_SIZE, 2 * EPOCH_SIZE]     # checkpoints by step, as uninterrupted


def test_resume_needs_run_name_and_a_state(faces, tmp_path):
    argv = [a for a in _argv(faces, tmp_path, SOFTMAX) if a not in ('--run_name', 'r1')]
    assert_one_line_error(run_main(train_softmax, argv + ['--resume']), '--resume needs --run_name', code=2)
    # a run folder holding checkpoints but no training state: refused, nothing touched
    model_dir = tmp_path / 'models' / 'r1'
    model_dir.mkdir(parents=True)
    (model_dir / 'model-r1.ckpt-3.index').write_bytes(b'not a checkpoint')
    before = tree_hashes(tmp_path)
    result = run_main(train_softmax, _argv(faces, tmp_path, SOFTMAX) + ['--resume'])
    assert_one_line_error(result, str(model_dir), 'no training state', '--pretrained_model', code=2)
    assert tree_hashes(tmp_path) == before
