"""TensorFlow's parameter-server runtime: TF_CONFIG parsing, and a local cluster (1 parameter server,
a chief and a worker as processes on localhost ports) training the small network with synchronous
updates, the worker killed after its first step and restarted; the chief's checkpoint holds the
global step the two reached together and the one-device variables."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from facenet_tf import train_triplet as train_tripletloss
from facenet_tf.errors import FaceNetError
from facenet_tf.training import distributed
from facenet_tf.models import small_cnn
from test_towers import SIZE, synthetic_faces  # noqa: F401 (fixture)

tf1 = tf.compat.v1
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCHS, EPOCH_SIZE = 2, 50    # 100 updates: the chief alone would take a while (2 gradients each)
FLAGS = ['--model_def', 'models.small_cnn', '--image_size', str(SIZE), '--batch_size', '12', '--embedding_size', '8',
         '--nrof_preprocess_threads', '1', '--max_nrof_epochs', str(EPOCHS), '--epoch_size', str(EPOCH_SIZE),
         '--images_per_person', '3', '--triplet_mining', 'batch', '--triplet_selection', 'hardest',
         '--run_name', 'cluster']


def test_tf_config_parsing():
    cluster = {'ps': ['h0:1'], 'worker': ['h1:1', 'h2:1']}
    first = distributed.from_environment({'TF_CONFIG': json.dumps({'cluster': cluster,
                                                                   'task': {'type': 'worker', 'index': 0}})})
    assert (first.task_type, first.task_index, first.is_chief, first.nrof_workers) == ('worker', 0, True, 2)
    assert first.device == '/job:worker/task:0'
    with_chief = dict(cluster, chief=['h3:1'])
    second = distributed.from_environment({'TF_CONFIG': json.dumps({'cluster': with_chief,
                                                                    'task': {'type': 'worker', 'index': 0}})})
    assert not second.is_chief and second.nrof_workers == 3
    assert distributed.from_environment({}) is None
    with pytest.raises(FaceNetError, match=r'task worker:5 is not in the cluster'):
        distributed.from_environment({'TF_CONFIG': json.dumps({'cluster': cluster, 'task': {'type': 'worker',
                                                                                            'index': 5}})})
    with pytest.raises(FaceNetError, match=r'TF_CONFIG is not a cluster and task description'):
        distributed.from_environment({'TF_CONFIG': '{"cluster": '})


def _start(task_type, cluster, data, tmp, log_name, extra=()):
    env = dict(os.environ, PYTHONUNBUFFERED='1',
               TF_CONFIG=json.dumps({'cluster': cluster, 'task': {'type': task_type, 'index': 0}}))
    log = open(tmp / log_name, 'w')
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, 'src', 'train_tripletloss.py'), '--data_dir',
                                str(data), '--logs_base_dir', str(tmp / 'logs'), '--models_base_dir',
                                str(tmp / 'models')] + FLAGS + list(extra), cwd=ROOT, env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    log.close()
    return process


def _wait_for(path, pattern, process, seconds=300):
    deadline = time.time() + seconds
    while time.time() < deadline:
        match = re.search(pattern, path.read_text())
        if match:
            return match
        assert process.poll() is None, path.read_text()
        time.sleep(0.2)
    raise AssertionError('%s: no %r within %d s:\n%s' % (path, pattern, seconds, path.read_text()))


def test_local_cluster_trains_and_a_restarted_worker_rejoins(synthetic_faces, tmp_path):  # noqa: F811
    ports = distributed.free_local_ports(3)
    cluster = {'ps': ['localhost:%d' % ports[0]], 'chief': ['localhost:%d' % ports[1]],
               'worker': ['localhost:%d' % ports[2]]}
    processes = []
    try:
        processes += [_start(task, cluster, synthetic_faces, tmp_path, task + '.log') for task in ('ps', 'chief',
                                                                                                 'worker')]
        ps, chief, worker = processes
        # the worker's first step needs the chief's gradient too (synchronous updates)
        _wait_for(tmp_path / 'worker.log', r'Epoch: \[0\]\[1/', worker)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        restarted = _start('worker', cluster, synthetic_faces, tmp_path, 'restarted.log')
        processes.append(restarted)
        joined = int(_wait_for(tmp_path / 'restarted.log', r'joined the cluster at global step (\d+)', restarted)
                     .group(1))
        assert chief.wait(timeout=300) == 0, (tmp_path / 'chief.log').read_text()
        assert restarted.wait(timeout=300) == 0, (tmp_path / 'restarted.log').read_text()
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    chief_log, restarted_log = (tmp_path / 'chief.log').read_text(), (tmp_path / 'restarted.log').read_text()
    last = EPOCHS * EPOCH_SIZE
    assert 1 <= joined <= last      # the values on the parameter server, not a new start
    # both stop at the cluster's last update, which the chief checkpoints
    for log in (chief_log, restarted_log):
        assert re.search(r'the cluster has done its %d updates: training ends at global step %d \(\d+ steps run here\)'
                         % (last, last), log)
    model_dir = tmp_path / 'models' / 'cluster'
    prefix = tf.train.latest_checkpoint(str(model_dir))
    assert prefix.endswith('model-cluster.ckpt-%d' % last)
    saved = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    assert sorted(saved) == _one_device_variables(synthetic_faces)
    assert 'Parameter server /job:ps/task:0 serving' in (tmp_path / 'ps.log').read_text()
    assert 'Restored' not in chief_log and 'Model directory' in restarted_log


def _one_device_variables(data):
    """The names a one-process run of the same flags saves."""
    args = train_tripletloss.parse_arguments(['--data_dir', str(data)] + FLAGS)
    with tf.Graph().as_default():
        graph = train_tripletloss.build_graph(args, small_cnn)
        return sorted(v.op.name for v in graph.saved)


ASYNC_UPDATES = 60


def test_asynchronous_updates_each_worker_applies_its_own(synthetic_faces, tmp_path):  # noqa: F811
    """--replica_updates async: every step of either worker is one update of the shared variables, so
    the global step runs ahead of each worker's own step count by the other's updates (with
    synchronous updates it equals that count: one update takes a gradient from each worker). The
    workers train in mixed precision (--precision bf16; 32 px), the variables on the parameter
    server stay float32."""
    ports = distributed.free_local_ports(3)
    cluster = {'ps': ['localhost:%d' % ports[0]], 'chief': ['localhost:%d' % ports[1]],
               'worker': ['localhost:%d' % ports[2]]}
    flags = ['--replica_updates', 'async', '--max_nrof_epochs', '1', '--epoch_size', str(ASYNC_UPDATES),
             '--precision', 'bf16', '--image_size', str(2 * SIZE)]
    processes = []
    try:
        processes += [_start(task, cluster, synthetic_faces, tmp_path, task + '.log', flags)
                      for task in ('ps', 'chief', 'worker')]
        for process, name in zip(processes[1:], ('chief.log', 'worker.log')):
            assert process.wait(timeout=300) == 0, (tmp_path / name).read_text()
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    ends, own = [], []
    for name in ('chief', 'worker'):
        log = (tmp_path / (name + '.log')).read_text()
        end, steps = re.search(r'the cluster has done its %d updates: training ends at global step (\d+) '
                               r'\((\d+) steps run here\)' % ASYNC_UPDATES, log).groups()
        ends.append(int(end))
        own.append(int(steps))
    assert min(own) >= 1, own  # both trained
    # each step an update of its own (both may start the last one); sync updates would take one from each
    assert ASYNC_UPDATES <= max(ends) <= sum(own) <= ASYNC_UPDATES + 2, (ends, own)
    prefix = tf.train.latest_checkpoint(str(tmp_path / 'models' / 'cluster'))
    assert prefix.endswith('model-cluster.ckpt-%d' % ends[0])  # the chief's checkpoint at its last step
    assert set(tf.train.load_checkpoint(prefix).get_variable_to_dtype_map().values()) == {tf.float32}
