"""Sharded alignment: the class partition, the shard taken from the scheduler's environment, and N
aligner processes on one output folder (with one of them killed and run again) against one run."""
import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from facenet_tf.align import align_dataset_mtcnn as script
from facenet_tf import sharding
from facenet_tf.errors import FaceNetError
from facenet_tf.images import read_rgb

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, 'src', 'align', 'align_dataset_mtcnn.py')
NAMES = ['person_%04d' % i for i in range(3000)] + ['Zoë_Ångström', 'José_María_Aznar', '李_明']


def test_partition_is_stable_balanced_and_the_same_across_processes(tmp_path):
    code = ('import json, sys; sys.path.insert(0, %r); from facenet_tf.sharding import shard_of; '
            'names = json.load(open(%r)); print(json.dumps([shard_of(n, 7) for n in names]))'
            % (os.path.join(ROOT, 'src'), str(tmp_path / 'names.json')))
    (tmp_path / 'names.json').write_text(json.dumps(NAMES))
    outputs = []
    for seed in ('0', '12345'):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        outputs.append(json.loads(subprocess.check_output([sys.executable, '-c', code], env=env)))
    here = [sharding.shard_of(n, 7) for n in NAMES]
    assert outputs[0] == outputs[1] == here
    # pinned values: a class's shard never changes between versions of the code
    assert [sharding.shard_of(n, 10) for n in ('Ai_Sugiyama', 'George_W_Bush', 'Zoë_Ångström')] == [8, 6, 4]
    assert sharding.shard_of('George_W_Bush', 1000) == 836
    counts = np.bincount(here, minlength=7)
    assert 0.9 * len(NAMES) / 7 < counts.min() <= counts.max() < 1.1 * len(NAMES) / 7
    shards = [sharding.select(NAMES, sharding.Shard(i, 7), name=str) for i in range(7)]
    assert sorted(sum(shards, [])) == sorted(NAMES)  # a partition: every class in exactly one shard


@pytest.mark.parametrize('environ, shard_count, expected', [
    ({}, None, (None, None)),
    ({'SLURM_ARRAY_TASK_ID': '3', 'SLURM_ARRAY_TASK_COUNT': '10'}, None, ((3, 10), 'SLURM_ARRAY_TASK_ID')),
    ({'SLURM_ARRAY_TASK_ID': '7', 'SLURM_ARRAY_TASK_MIN': '1', 'SLURM_ARRAY_TASK_COUNT': '10'}, None,
     ((6, 10), 'SLURM_ARRAY_TASK_ID')),
    ({'SLURM_ARRAY_TASK_ID': '8', 'SLURM_ARRAY_TASK_MIN': '0', 'SLURM_ARRAY_TASK_STEP': '2'}, 5,
     ((4, 5), 'SLURM_ARRAY_TASK_ID')),
    ({'JOB_COMPLETION_INDEX': '2'}, 4, ((2, 4), 'JOB_COMPLETION_INDEX')),
    ({'JOB_COMPLETION_INDEX': '0'}, 1, (None, 'JOB_COMPLETION_INDEX')),
])
def test_shard_from_the_environment(environ, shard_count, expected):
    shard, source = sharding.resolve(None, shard_count, environ)
    assert (shard and tuple(shard), source) == expected


@pytest.mark.parametrize('environ, shard_count, message', [
    ({'SLURM_ARRAY_TASK_ID': '10', 'SLURM_ARRAY_TASK_COUNT': '10'}, None,
     'SLURM_ARRAY_TASK_ID: the shard index must be between 0 and 9 (count 10), got 10'),
    ({'SLURM_ARRAY_TASK_ID': '3'}, None, 'give --shard_count'),
    ({'JOB_COMPLETION_INDEX': '1'}, None, 'give the number of shards with --shard_count'),
    ({'JOB_COMPLETION_INDEX': 'x'}, 2, "JOB_COMPLETION_INDEX is not an integer: 'x'"),
    ({}, 3, '--shard_count needs an index'),
])
def test_bad_environment_is_a_one_line_error(environ, shard_count, message):
    with pytest.raises(FaceNetError) as error:
        sharding.resolve(None, shard_count, environ)
    assert message in str(error.value) and '\n' not in str(error.value)


@pytest.mark.parametrize('value, message', [('3/3', 'must be between 0 and 2 (count 3), got 3'),
                                            ('-1/4', 'must be between 0 and 3 (count 4), got -1'),
                                            ('1/0', 'count must be at least 1'),
                                            ('2', 'expected INDEX/COUNT'), ('a/b', 'expected INDEX/COUNT')])
def test_bad_shard_flag_is_a_one_line_error(value, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        script.parse_arguments([str(tmp_path), str(tmp_path / 'out'), '--shard=' + value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert 'error: argument --shard: ' in err and message in err and err.count('error') == 1


# ---------------------------------------------------------------------------------------------
# Three shard processes on one folder against one unsharded run

COUNT = 3
ARGS = ['--image_size', '96', '--margin', '16']


@pytest.fixture(scope='module')
def sharded_input(data_dir, tmp_path_factory):
    """LFW originals linked into a dataset whose shard 0 holds 70 images in several classes (three
    detection batches: the first batch's lines are on disk before the last is done, so it can be
    killed part-way) and shards 1 and 2 a few."""
    lfw = os.path.join(data_dir, 'lfw_deepfunneled')
    src = tmp_path_factory.mktemp('sharded_input')
    wanted = {0: 70, 1: 6, 2: 6}
    total = 0
    for person in sorted(os.listdir(lfw)):
        shard = sharding.shard_of(person, COUNT)
        files = sorted(os.listdir(os.path.join(lfw, person)))
        if wanted[shard] <= 0 or len(files) < 3:
            continue
        take = files[:min(len(files), wanted[shard], 25)]
        wanted[shard] -= len(take)
        os.makedirs(str(src / person))
        for name in take:
            os.symlink(os.path.join(lfw, person, name), str(src / person / name))
        total += len(take)
        if max(wanted.values()) <= 0:
            break
    return str(src), total


def _shard_command(src, out, index):
    return [sys.executable, SCRIPT, src, out] + ARGS + ['--shard', '%d/%d' % (index, COUNT)]


def _outputs(out):
    """(crop pixels by relative path, sorted bounding-box lines with relative paths, temporaries)."""
    crops = {os.path.relpath(p, out): read_rgb(p) for p in glob.glob(os.path.join(out, '*', '*.png'))}
    lines = []
    for path in glob.glob(os.path.join(out, 'bounding_boxes_*.txt')):
        with open(path) as f:
            for line in f:
                assert line.endswith('\n')
                parts = line.split()
                lines.append(' '.join([os.path.relpath(parts[0], out)] + parts[1:]))
    return crops, sorted(lines), glob.glob(os.path.join(out, '*', '.*'))


def test_three_shards_with_one_killed_and_rerun_equal_one_run(sharded_input, tmp_path, capsys):
    src, total = sharded_input
    out = str(tmp_path / 'sharded')
    os.makedirs(out)
    procs = [subprocess.Popen(_shard_command(src, out, i), cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(COUNT)]
    killed_classes = [c for c in os.listdir(src) if sharding.shard_of(c, COUNT) == 0]
    boxes0 = os.path.join(out, 'bounding_boxes_shard_0_of_%d.txt' % COUNT)
    deadline = time.time() + 240
    while time.time() < deadline and procs[0].poll() is None:
        if os.path.exists(boxes0) and os.path.getsize(boxes0) > 0:  # a batch is complete
            break
        time.sleep(0.02)
    procs[0].send_signal(signal.SIGKILL)
    procs[0].wait()
    with open(boxes0) as f:
        at_kill = len(f.readlines())
    for proc in procs[1:]:
        text = proc.communicate(timeout=240)[0]
        assert proc.returncode == 0, text
    shard0_total = sum(len(os.listdir(os.path.join(src, c))) for c in killed_classes)
    assert 0 < at_kill < shard0_total, 'shard 0 should have been killed part-way'

    code = script.main(script.parse_arguments([src, out] + ARGS + ['--shard', '0/%d' % COUNT]))
    assert code == 0
    printed = capsys.readouterr().err   # the notes of the run
    assert 'Shard 0/%d: %d of %d classes' % (COUNT, len(killed_classes), len(os.listdir(src))) in printed
    assert '%d of %d images already aligned by an earlier run' % (at_kill, shard0_total) in printed
    assert sorted(os.path.basename(p) for p in glob.glob(os.path.join(out, 'bounding_boxes_*.txt'))) == [
        'bounding_boxes_shard_%d_of_%d.txt' % (i, COUNT) for i in range(COUNT)]

    single = str(tmp_path / 'single')
    assert script.main(script.parse_arguments([src, single] + ARGS)) == 0
    crops, lines, temporaries = _outputs(out)
    single_crops, single_lines, _ = _outputs(single)
    assert not temporaries
    assert len(single_lines) == total and len(single_crops) > 0.9 * total
    assert lines == single_lines  # the same lines, each once
    assert sorted(crops) == sorted(single_crops)
    for name, pixels in single_crops.items():
        assert np.array_equal(crops[name], pixels), name

    code = script.main(script.parse_arguments([src, out] + ARGS + ['--shard', '0/%d' % COUNT]))
    assert '%d of %d images already aligned' % (shard0_total, shard0_total) in capsys.readouterr().err
    assert _outputs(out)[1] == single_lines


def test_a_second_process_of_the_same_shard_is_refused(tmp_path, capsys):
    from facenet_tf.align import alignment_plan
    (tmp_path / 'in' / 'someone').mkdir(parents=True)
    out = tmp_path / 'out'
    out.mkdir()
    shard = sharding.Shard(1, 2)
    path, held = alignment_plan.open_shard_boxes(str(out), shard)
    try:
        held.write('partial line without newline')
        held.flush()
        with pytest.raises(FaceNetError) as error:
            alignment_plan.open_shard_boxes(str(out), shard)
        assert 'shard 1/2 is already running' in str(error.value)
    finally:
        held.close()
    with open(path, 'a') as f:
        f.write('\na/b.png 1 2 3 4\nc/d.png 5 6')
    _, f = alignment_plan.open_shard_boxes(str(out), shard)
    f.close()
    with open(path) as f:
        assert f.read() == 'partial line without newline\na/b.png 1 2 3 4\n'
