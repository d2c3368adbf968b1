"""Hostile input to the training scripts: TF_CONFIG, an unreachable parameter server, learning-rate
schedule and recipe files, and the training flags' paths. Each case is one line naming what is wrong,
exit code 2, before any run folder is made and with the inputs unchanged. The runs are in-process and
stop before a graph is built (the killed-and-continued runs are in test_train_resume.py)."""
import contextlib
import io
import json
import os

import pytest

from facenet_tf import train_softmax
from facenet_tf import train_triplet as train_tripletloss
from facenet_tf.cli import run
from facenet_tf.training import distributed
from hostile import ToolRun, assert_one_line_error
from training_faces import make_faces

FLAGS = ['--model_def', 'models.small_cnn', '--image_size', '32', '--batch_size', '12', '--epoch_size', '2',
         '--max_nrof_epochs', '1', '--embedding_size', '16', '--nrof_preprocess_threads', '1']


@pytest.fixture(scope='module')
def faces(data_dir, tmp_path_factory):
    return make_faces(data_dir, tmp_path_factory.mktemp('faces'))


def _run(module, argv):
    """The script as its __main__ runs it (flags parsed inside cli.run, so a recipe error is one line
    too), in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = run(lambda a: module.main(module.parse_arguments(a)), [str(a) for a in argv],
                       prog=os.path.basename(module.__file__))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 2
    return ToolRun(code, out.getvalue(), err.getvalue())


def _train(module, faces, tmp, extra):
    """A run of `module` on the faces with its folders under tmp; asserts no run folder was made."""
    result = _run(module, ['--data_dir', faces / 'train', '--logs_base_dir', tmp / 'logs', '--models_base_dir',
                           tmp / 'models'] + FLAGS + list(extra))
    assert not (tmp / 'logs').exists() and not (tmp / 'models').exists(), result
    return result


# ---------------------------------------------------------------- TF_CONFIG

CLUSTER = {'ps': ['localhost:2222'], 'worker': ['localhost:2223']}
TF_CONFIGS = [
    ('{"cluster": ', 'not valid JSON'),
    ('[1, 2]', 'not a JSON object'),
    (json.dumps({'cluster': {'ps': None, 'worker': ['h:1']}, 'task': {'type': 'worker'}}),
     'cluster.ps is null, not a list'),
    (json.dumps({'cluster': {'ps': 'h:1', 'worker': ['h:2']}, 'task': {'type': 'worker'}}),
     'cluster.ps is "h:1", not a list'),
    (json.dumps({'cluster': {'ps': 7, 'worker': ['h:2']}, 'task': {'type': 'worker'}}), 'cluster.ps is 7, not a list'),
    (json.dumps({'cluster': 'h:1', 'task': {'type': 'worker'}}), '"cluster" is str'),
    ('{"cluster": {"ps": ["h:1"], "worker": ["h:2"]}, "task": {"type": "worker", "index": 1e400}}',
     'task index Infinity is not an integer'),
    (json.dumps({'cluster': CLUSTER, 'task': {'type': 'worker', 'index': -1}}), 'task worker:-1 is not in the cluster'),
    (json.dumps({'cluster': CLUSTER, 'task': {'type': 'worker', 'index': 3}}), 'task worker:3 is not in the cluster'),
    (json.dumps({'cluster': CLUSTER, 'task': {'type': 'worker', 'index': 0.5}}), 'task index 0.5 is not an integer'),
    (json.dumps({'cluster': CLUSTER, 'task': {'index': 0}}), 'the task has no "type"'),
    (json.dumps({'cluster': CLUSTER, 'task': {'type': 'evaluator'}}), 'task type "evaluator"'),
    (json.dumps({'cluster': CLUSTER, 'task': 'worker'}), '"task" is str, not an object'),
    (json.dumps({'cluster': {'ps': ['nohost'], 'worker': ['h:2']}, 'task': {'type': 'worker'}}),
     'cluster.ps[0] is "nohost", not a host:port address'),
    (json.dumps({'cluster': {'ps': ['h:99999'], 'worker': ['h:2']}, 'task': {'type': 'worker'}}),
     'cluster.ps[0] is "h:99999"'),
    (json.dumps({'cluster': {'ps': ['h:1'], 'worker': ['h 2:22']}, 'task': {'type': 'worker'}}),
     'cluster.worker[0] is "h 2:22"'),
    (json.dumps({'cluster': {'ps': ['h:1'], 'worker': [5]}, 'task': {'type': 'worker'}}), 'cluster.worker[0] is 5'),
    (json.dumps({'cluster': {'worker': ['h:2']}, 'task': {'type': 'worker'}}), 'needs a ps job'),
    ('{"cluster": {"ps": ["h:1"], "worker": ["h:2"]}, "task": {"type": "worker", "index": NaN}}',
     'not valid JSON (NaN is not a JSON value'),
]


@pytest.mark.parametrize('text, what', TF_CONFIGS)
def test_bad_tf_config_is_one_line(faces, tmp_path, monkeypatch, text, what):
    monkeypatch.setenv('TF_CONFIG', text)
    result = _train(train_tripletloss, faces, tmp_path, ['--run_name', 'c'])
    assert_one_line_error(result, 'TF_CONFIG is not a cluster and task description: ', what, code=2)


def test_tf_config_checks_without_a_script():
    with pytest.raises(distributed.FaceNetError, match='nested too deeply'):
        distributed.from_environment({'TF_CONFIG': '[' * 100000})
    with pytest.raises(distributed.FaceNetError, match='longer than'):
        distributed.from_environment({'TF_CONFIG': '{"a": "%s"}' % ('x' * (2 << 20))})


def test_unreachable_parameter_server_gives_up_after_the_timeout(faces, tmp_path, monkeypatch):
    ps, chief = distributed.free_local_ports(2)     # nothing listens on them
    cluster = {'ps': ['localhost:%d' % ps], 'chief': ['localhost:%d' % chief]}
    monkeypatch.setenv('TF_CONFIG', json.dumps({'cluster': cluster, 'task': {'type': 'chief', 'index': 0}}))
    result = _train(train_tripletloss, faces, tmp_path, ['--run_name', 'c', '--cluster_wait_timeout', '1.5'])
    assert 'Waiting for parameter server /job:ps/task:0 at localhost:%d (giving up after 1.5 s)' % ps in result.out
    assert_one_line_error(result, 'TF_CONFIG: parameter server /job:ps/task:0 at localhost:%d unreachable after 1.5 s'
                          % ps, '--cluster_wait_timeout', code=2)


# ---------------------------------------------------------------- schedule and recipe files

def _hostile_text_file(folder, case):
    """(path, what the message says) of a file that is not small UTF-8 text."""
    folder.mkdir(exist_ok=True)
    if case == 'binary':
        path = folder / 'binary.txt'
        path.write_bytes(b'0: 0.1\n\x00\x01\x02\xff' * 10)
        return path, 'binary data (NUL bytes)'
    if case == 'not utf-8':
        path = folder / 'latin1.txt'
        path.write_bytes('0: 0.1 # caf\xe9\n'.encode('latin-1'))
        return path, 'not UTF-8 text (byte 12)'
    if case == 'huge':
        path = folder / 'huge.txt'
        with open(path, 'wb') as f:      # 1 GiB, sparse: only its first MiB may be read
            f.truncate(1 << 30)
        return path, 'larger than 1024 KiB'
    path = folder / 'a_folder'
    path.mkdir()
    return path, 'is a folder'


def _unchanged(path):
    """What shows that a file was left alone (size and modification time; hashing 1 GiB is slow)."""
    return [(p, os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in [path] + sorted(path.glob('*'))]


@pytest.mark.parametrize('case', ['binary', 'not utf-8', 'huge', 'folder'])
def test_schedule_file_that_is_not_text(faces, tmp_path, case):
    path, what = _hostile_text_file(tmp_path / 'in', case)
    before = _unchanged(path)
    result = _train(train_softmax, faces, tmp_path, ['--learning_rate', '-1', '--learning_rate_schedule_file', path])
    assert_one_line_error(result, str(path), what, 'learning rate schedule', code=2)
    assert _unchanged(path) == before


@pytest.mark.parametrize('content, what', [
    ('0: nan\n', 'line 1: expected "epoch: learning_rate" (epoch >= 0, finite rate)'),
    ('0: 0.1\n5: inf\n', 'line 2:'),
    ('-3: 0.1\n', 'line 1:'),
    pytest.param('0: 0.1\n%s: 0.2\n' % ('9' * 5000), 'line 2:', id='5000-digit epoch'),
    ('# only a comment\n', 'holds no "epoch: learning_rate" line'),
])
def test_schedule_values(faces, tmp_path, content, what):
    path = tmp_path / 'schedule.txt'
    path.write_text(content)
    result = _train(train_tripletloss, faces, tmp_path,
                    ['--learning_rate', '-1', '--learning_rate_schedule_file', path])
    line = assert_one_line_error(result, str(path), what, code=2)
    assert len(line) < 300


@pytest.mark.parametrize('case', ['binary', 'not utf-8', 'huge', 'folder'])
def test_recipe_file_that_is_not_text(faces, tmp_path, case):
    path, what = _hostile_text_file(tmp_path / 'in', case)
    result = _train(train_tripletloss, faces, tmp_path, ['--config', path])
    assert_one_line_error(result, str(path), what, 'config', code=2)


@pytest.mark.parametrize('content, what', [
    ('no_such_flag = 3\n', "unknown key 'no_such_flag'"),
    ('batch_size = "many"\n', 'batch_size = many: invalid int value'),
    ('batch_size = [12, 24]\n', 'batch_size must be a number or a string, not list'),
    ('[batch_size]\nx = 1\n', 'batch_size must be a number or a string, not dict'),
    ('optimizer = "SGD"\n', 'optimizer = SGD is not one of ADAGRAD'),
    ('random_flip = "yes"\n', 'random_flip must be true or false'),
    ('num_gpus = 0\n', 'num_gpus = 0: must be at least 1'),
    ('learning_rate = 0.1\nlearning_rate = 0.2\n', 'Cannot overwrite a value'),
    pytest.param('max_nrof_epochs = 1%s\n' % ('0' * 5000), 'Exceeds the limit (4300 digits)', id='5001-digit int'),
])
def test_recipe_keys_and_values(faces, tmp_path, content, what):
    path = tmp_path / 'recipe.toml'
    path.write_text(content)
    result = _train(train_softmax, faces, tmp_path, ['--config', path])
    line = assert_one_line_error(result, 'config file %s' % path, what, code=2)
    assert len(line) < 400


# ---------------------------------------------------------------- the flags' paths

def test_training_set_with_one_class_or_none(faces, tmp_path):
    one = tmp_path / 'one'
    one.mkdir()
    os.symlink(str(faces / 'train' / 's1'), str(one / 's1'))
    result = _run(train_tripletloss, ['--data_dir', one, '--logs_base_dir', tmp_path / 'logs', '--models_base_dir',
                                      tmp_path / 'models'] + FLAGS)
    assert_one_line_error(result, str(one), 'needs at least 2 people', code=2)
    empty = tmp_path / 'empty'
    empty.mkdir()
    result = _run(train_softmax, ['--data_dir', empty, '--logs_base_dir', tmp_path / 'logs', '--models_base_dir',
                                  tmp_path / 'models'] + FLAGS)
    assert_one_line_error(result, str(empty), 'needs at least 2 classes', code=2)
    assert not (tmp_path / 'logs').exists() and not (tmp_path / 'models').exists()


def test_record_file_that_is_a_folder(tmp_path):
    data = tmp_path / 'records'
    (data / 'train.rec').mkdir(parents=True)
    (data / 'train.idx').write_text('')
    result = _run(train_softmax, ['--data_dir', data, '--logs_base_dir', tmp_path / 'logs', '--models_base_dir',
                                  tmp_path / 'models'] + FLAGS)
    assert_one_line_error(result, str(data / 'train.rec'), 'is a folder, not a record file', code=2)


def test_pretrained_model_that_is_not_a_checkpoint(faces, tmp_path):
    junk = tmp_path / 'model.ckpt-1'
    junk.write_bytes(os.urandom(4096))
    empty = tmp_path / 'empty_model'
    empty.mkdir()
    result = _train(train_softmax, faces, tmp_path, ['--pretrained_model', junk])
    assert_one_line_error(result, str(junk), "cannot read the pretrained model's checkpoint", code=2)
    result = _train(train_tripletloss, faces, tmp_path, ['--pretrained_model', empty])
    assert_one_line_error(result, str(empty), code=2)


def test_models_base_dir_that_is_a_file(faces, tmp_path):
    models = tmp_path / 'models'
    models.write_text('keep me')
    result = _run(train_softmax, ['--data_dir', faces / 'train', '--logs_base_dir', tmp_path / 'logs',
                                  '--models_base_dir', models, '--run_name', 'r'] + FLAGS)
    assert_one_line_error(result, str(models / 'r'), 'cannot create folder', code=2)
    assert models.read_text() == 'keep me'


@pytest.mark.parametrize('name', ['../escape', '..', 'a/b', ''])
def test_run_name_stays_in_the_base_folders(faces, tmp_path, name):
    result = _train(train_softmax, faces, tmp_path / 'base', ['--run_name', name])
    assert_one_line_error(result, '--run_name', 'one folder name', code=2)
    assert not (tmp_path / 'escape').exists()


def test_lfw_pairs_naming_images_outside_lfw_dir(faces, tmp_path):
    pairs = tmp_path / 'pairs.txt'
    pairs.write_text('1\t1\nAaron_Peirsol\t../../train/s1\t1\n')
    result = _train(train_softmax, faces, tmp_path, ['--lfw_dir', faces / 'lfw', '--lfw_pairs', pairs])
    assert_one_line_error(result, str(pairs), code=2)


def test_continued_run_trims_only_later_lfw_lines(tmp_path):
    from facenet_tf.training import lfw_check
    path = tmp_path / 'lfw_result.txt'
    data = b'10\t0.5\t0.1\n20\t0.6\t0.2\n\xff\xfe not text\n%s\t0.1\t0.1\n30\t0.7\t0.3\n' % (b'9' * 5000)
    path.write_bytes(data)
    lfw_check.trim_lfw_results(str(tmp_path), 20)
    assert path.read_bytes() == b'10\t0.5\t0.1\n20\t0.6\t0.2\n\xff\xfe not text\n%s\t0.1\t0.1\n' % (b'9' * 5000)
    with open(path, 'ab') as f:          # larger than the bound: left alone, not read whole
        f.truncate(lfw_check.TRIM_LIMIT + 10)
    lfw_check.trim_lfw_results(str(tmp_path), 0)
    assert os.path.getsize(path) == lfw_check.TRIM_LIMIT + 10


def test_training_state_of_another_network_is_one_line(tmp_path):
    import tensorflow as tf
    from facenet_tf.errors import FaceNetError
    from facenet_tf.training import checkpoints
    tf1 = tf.compat.v1
    with tf.Graph().as_default(), tf1.Session() as sess:
        weights = tf1.get_variable('w', shape=[4, 8])
        saver = tf1.train.Saver([weights])
        sess.run(tf1.global_variables_initializer())
        first = checkpoints.save_state(sess, saver, str(tmp_path), 5)
        prefix = checkpoints.save_state(sess, saver, str(tmp_path), 10)
    assert checkpoints.latest_state(str(tmp_path)) == prefix and not os.path.exists(first + '.index')
    (tmp_path / checkpoints.STATE_FOLDER / 'checkpoint').write_text('model_checkpoint_path: "/etc/passwd"\n')
    assert checkpoints.latest_state(str(tmp_path)) == prefix      # found by listing, the state file unread
    with tf.Graph().as_default(), tf1.Session() as sess:
        other = tf1.get_variable('w', shape=[4, 16])
        with pytest.raises(FaceNetError, match=r'state.ckpt-10: w has shape \[4, 8\] in the training state, \[4, 16\]'):
            checkpoints.restore_state(sess, tf1.train.Saver([other]), prefix, [other])
        extra = tf1.get_variable('v', shape=[2])
        with pytest.raises(FaceNetError, match='the training state lacks v'):
            checkpoints.restore_state(sess, tf1.train.Saver([extra]), prefix, [extra])


def test_huge_schedule_file_is_not_read_whole(tmp_path):
    import tracemalloc
    from facenet_tf.errors import FaceNetError
    from facenet_tf.training import schedule
    path, _ = _hostile_text_file(tmp_path, 'huge')
    tracemalloc.start()
    try:
        with pytest.raises(FaceNetError, match='larger than 1024 KiB'):
            schedule.read_learning_rate_schedule(str(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, peak          # about the 1 MiB read, not the 1 GiB file


def test_statistics_of_a_continued_run_read_bounded(tmp_path):
    import h5py
    import numpy as np
    from facenet_tf.training import softmax_training
    from facenet_tf.errors import FaceNetError
    path = tmp_path / 'stat.h5'
    with h5py.File(path, 'w') as f:     # declares a billion losses (nothing allocated) and odd arrays
        f.create_dataset('loss', shape=(10 ** 9,), dtype='f4', chunks=(1024,), fillvalue=7.0)
        f.create_dataset('accuracy', data=np.array(['x'] * 20, dtype='S1'))
        f.create_dataset('prelogits_hist', data=np.ones((3, 5)))
        f.create_dataset('learning_rate', data=np.float32([0.1, 0.2, 0.3]))
    stat = softmax_training.new_statistics(3, 4, 1)
    softmax_training.continue_statistics(stat, str(path), 8, 2, 1)
    np.testing.assert_array_equal(stat['loss'], [7.0] * 8 + [0.0] * 4)       # up to the step only
    np.testing.assert_array_equal(stat['learning_rate'], np.float32([0.1, 0.2, 0.0]))  # up to the epoch only
    assert not stat['accuracy'].any() and not stat['prelogits_hist'].any()  # wrong kind / shape: skipped
    path.write_bytes(b'\x89HDF\r\n\x1a\n' + os.urandom(2000))
    with pytest.raises(FaceNetError, match='stat.h5: cannot read the statistics of the run to continue'):
        softmax_training.continue_statistics(softmax_training.new_statistics(3, 4, 1), str(path), 8, 2, 1)
