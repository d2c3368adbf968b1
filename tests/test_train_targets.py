"""The per-epoch check with several targets: a real classifier-training run with the small network on
real faces, checked on the classic LFW pairs and on two .bin sets (one holding the same pairs, which
must score exactly as the folder does), every 2 epochs and after the last; the one loader of
verification sets; the typed training config; bad targets refused before a run folder is made."""
import argparse
import os

import numpy as np
import pytest

from facenet_tf import train_softmax, train_triplet
from facenet_tf.errors import FaceNetError
from facenet_tf.training import config as config_lib
from facenet_tf.training import lfw_check
from facenet_tf.verification_sets import load_verification_set, write_bin
from training_faces import event_tags, make_faces, run_training

SIZE = 32
COMMON = ['--model_def', 'models.small_cnn', '--image_size', str(SIZE), '--batch_size', '12',
          '--nrof_preprocess_threads', '1', '--seed', '1', '--lfw_batch_size', '20', '--embedding_size', '16',
          '--optimizer', 'ADAM', '--learning_rate', '0.01']


def _pairs(faces):
    """The 20 pairs of pairs.txt (10 same-person, then 10 different-person) as (path, path, issame)."""
    lines = (faces / 'pairs.txt').read_text().splitlines()[1:]
    result = []
    for line in lines:
        p = line.split()
        sides = [(p[0], p[1]), (p[0], p[2])] if len(p) == 3 else [(p[0], p[1]), (p[2], p[3])]
        paths = [str(faces / 'lfw' / n / ('%s_%04d.png' % (n, int(i)))) for n, i in sides]
        result.append((paths[0], paths[1], len(p) == 3))
    return result


def _write(path, pairs):
    images = [open(p, 'rb').read() for a, b, _ in pairs for p in (a, b)]
    write_bin(str(path), images, [same for _, _, same in pairs])
    return str(path)


@pytest.fixture(scope='module')
def faces(data_dir, tmp_path_factory):
    """The shared tiny training set and LFW subset, plus two .bin targets: same.bin holds the 20 LFW
    pairs ordered so that its file-order folds are the pairs file's balanced View-1 folds (same
    pairs, same images: the same numbers), few.bin 6 of them, the kinds alternating."""
    root = make_faces(data_dir, tmp_path_factory.mktemp('faces'))
    pairs = _pairs(root)
    same, diff = pairs[:10], pairs[10:]
    _write(root / 'same.bin', same[:5] + diff[:5] + same[5:] + diff[5:])
    _write(root / 'few.bin', [pair for both in zip(same[:3], diff[:3]) for pair in both])  # both kinds per fold
    return root


@pytest.fixture(scope='module')
def run(faces, tmp_path_factory):
    tmp = tmp_path_factory.mktemp('run')
    code, model_dir, log_dir = run_training(train_softmax, faces / 'train', tmp, COMMON + [
        '--max_nrof_epochs', '3', '--epoch_size', '1', '--lfw_every_n_epochs', '2',
        '--lfw_dir', str(faces / 'lfw'), '--lfw_pairs', str(faces / 'pairs.txt'), '--lfw_nrof_folds', '2',
        '--lfw_distance_metric', '1', '--lfw_subtract_mean',
        '--val_set', 'same=%s' % (faces / 'same.bin'), '--val_set', 'few=%s' % (faces / 'few.bin')])
    return code, model_dir, log_dir


def _results(log_dir, name):
    lines = open(os.path.join(log_dir, '%s_result.txt' % name)).read().splitlines()
    return [(int(s), float(a), float(v)) for s, a, v in (line.split('\t') for line in lines)]


def test_every_target_checked_every_n_epochs_and_after_the_last(run, faces):
    code, model_dir, log_dir = run
    assert code == 0
    lfw, same, few = (_results(log_dir, name) for name in ('lfw', 'same', 'few'))
    # epochs 1..3 of one step each: checked after epoch 2 (every 2) and after the last one, 3
    assert [s for s, _, _ in lfw] == [s for s, _, _ in same] == [s for s, _, _ in few] == [2, 3]
    # the .bin of the same pairs and images, through the encoded-image path, scores as the folder
    np.testing.assert_allclose([r[1:] for r in same], [r[1:] for r in lfw], atol=1e-5)
    assert all(0.0 <= a <= 1.0 and 0.0 <= v <= 1.0 for _, a, v in few)
    tags = event_tags(log_dir)
    assert {'lfw/accuracy', 'lfw/val_rate', 'time/lfw', 'same/accuracy', 'same/val_rate', 'time/same',
            'few/accuracy', 'few/val_rate', 'time/few'} <= tags
    # the best checkpoint follows the first target (LFW); epochs with no check leave stat.h5 at 0
    best = open(os.path.join(model_dir, 'best', 'best.txt')).read().split('\t')
    accuracies = [a for _, a, _ in lfw]
    assert int(best[0]) == [2, 3][int(np.argmax(accuracies))] and float(best[1]) == max(accuracies)
    import h5py
    with h5py.File(os.path.join(log_dir, 'stat.h5'), 'r') as f:
        np.testing.assert_allclose(f['lfw_accuracy'][:], [0.0] + accuracies, atol=1e-5)
    # arguments.txt: the flags as parsed, nothing derived
    arguments = open(os.path.join(log_dir, 'arguments.txt')).read().splitlines()
    keys = [line.split(':')[0] for line in arguments]
    assert keys == list(vars(train_softmax.parse_arguments([])))
    assert "val_set: ['same=%s', 'few=%s']" % (faces / 'same.bin', faces / 'few.bin') in arguments
    assert 'lfw_every_n_epochs: 2' in arguments


def test_run_logs_a_line_per_target(faces, tmp_path, capsys):
    """A triplet run (epochs from 0) with only .bin targets: the first --val_set is the first target."""
    code, model_dir, log_dir = run_training(train_triplet, faces / 'train', tmp_path, [
        '--model_def', 'models.small_cnn', '--image_size', str(SIZE), '--batch_size', '12',
        '--people_per_batch', '4', '--images_per_person', '4', '--epoch_size', '1', '--max_nrof_epochs', '2',
        '--nrof_preprocess_threads', '1', '--embedding_size', '16', '--seed', '1', '--lfw_nrof_folds', '2',
        '--lfw_use_flipped_images', '--val_set', 'few=%s' % (faces / 'few.bin'),
        '--val_set', 'pairs=%s,%s' % (faces / 'lfw', faces / 'pairs.txt')])
    out = capsys.readouterr().out
    assert code == 0
    assert out.count('few: accuracy') == 2 and out.count('pairs: accuracy') == 2 and 'LFW: accuracy' not in out
    assert not os.path.exists(os.path.join(log_dir, 'lfw_result.txt'))
    assert [s for s, _, _ in _results(log_dir, 'pairs')] == [1, 2]
    best = open(os.path.join(model_dir, 'best', 'best.txt')).read().split('\t')
    assert float(best[1]) == max(a for _, a, _ in _results(log_dir, 'few'))


def test_one_loader_for_folders_and_bin_files(faces, capsys):
    folder = load_verification_set(str(faces / 'lfw'), str(faces / 'pairs.txt'), 2)
    assert (folder.name, folder.encoded, folder.issame.size, folder.skipped) == ('lfw', False, 20, 0)
    assert folder.where.shape == (40,) and len(folder.items) == len(set(folder.items)) <= 40
    assert [len(f) for f in folder.folds] == [10, 10]                 # View 1: balanced folds
    binary = load_verification_set(str(faces / 'same.bin'), None, 2, name='same')
    assert binary.encoded and binary.folds is None and binary.issame.tolist() == [True] * 5 + [False] * 5 + \
        [True] * 5 + [False] * 5
    assert len(binary.items) == len(folder.items)                     # the same distinct images
    # a missing image skips its pair, as the classic tools do
    pairs = faces / 'pairs_missing.txt'
    pairs.write_text((faces / 'pairs.txt').read_text() + 'Nobody 1 2\n')
    assert load_verification_set(str(faces / 'lfw'), str(pairs), 2).skipped == 1
    assert 'Skipped 1 image pairs' in capsys.readouterr().err
    with pytest.raises(FaceNetError, match='few.bin: 6 pairs cannot be split into 10 folds'):
        load_verification_set(str(faces / 'few.bin'), None, 10)


@pytest.mark.parametrize('specs, message', [
    (['bad name=x.bin'], r"--val_set 'bad name=x.bin': expected NAME=FILE.bin"),
    (['x'], r"--val_set 'x': expected NAME="),
    (['lfw={bin}'], r'must have different names: lfw is given 2 times \(lfw is the --lfw_dir one\)'),
    (['a={bin}', 'a={bin}'], 'must have different names: a is given 2 times'),
    (['a={lfw}'], r'--val_set a=.*: not a .bin file \(a folder needs its pairs file'),
    (['a={pairs}'], r'pairs.txt is not a verification set'),
    (['a={lfw},{lfw}/nothing.txt'], 'pairs file not found'),
])
def test_bad_targets_refused_before_the_run(faces, tmp_path, specs, message):
    values = {'bin': faces / 'few.bin', 'lfw': faces / 'lfw', 'pairs': faces / 'pairs.txt'}
    argv = ['--data_dir', str(faces / 'train'), '--model_def', 'models.small_cnn', '--lfw_dir', str(faces / 'lfw'),
            '--lfw_pairs', str(faces / 'pairs.txt'), '--lfw_nrof_folds', '2',
            '--logs_base_dir', str(tmp_path / 'logs'), '--models_base_dir', str(tmp_path / 'models')]
    for spec in specs:
        argv += ['--val_set', spec.format(**values)]
    with pytest.raises(FaceNetError, match=message):
        train_softmax.main(train_softmax.parse_arguments(argv))
    assert not (tmp_path / 'logs').exists() and not (tmp_path / 'models').exists()


def test_recipe_lists_targets_and_command_line_adds(tmp_path):
    recipe = tmp_path / 'recipe.toml'
    recipe.write_text('val_set = ["a=/sets/a.bin", "b=/sets/lfw,/sets/pairs.txt"]\nlfw_every_n_epochs = 5\n')
    args = train_triplet.parse_arguments(['--config', str(recipe), '--val_set', 'c=/sets/c.bin'])
    assert args.val_set == ['a=/sets/a.bin', 'b=/sets/lfw,/sets/pairs.txt', 'c=/sets/c.bin']
    assert args.lfw_every_n_epochs == 5
    recipe.write_text('lfw_every_n_epochs = 0\n')
    with pytest.raises(FaceNetError, match='lfw_every_n_epochs = 0'):
        train_triplet.parse_arguments(['--config', str(recipe)])
    assert lfw_check.parse_target('b=/sets/lfw,/sets/pairs.txt') == ('b', '/sets/lfw', '/sets/pairs.txt')
    assert lfw_check.parse_target('c=/sets/c.bin') == ('c', '/sets/c.bin', None)


def test_typed_config_from_the_flags():
    args = train_softmax.parse_arguments(['--loss', 'cosface', '--num_gpus', '2', '--val_set', 'a=x.bin'])
    config = train_softmax.SoftmaxConfig.from_args(args, margins=(1.0, 0.0, 0.35))
    assert (config.loss, config.num_gpus, config.val_set, config.margins) == ('cosface', 2, ['a=x.bin'],
                                                                            (1.0, 0.0, 0.35))
    assert vars(config.flag_namespace()) == vars(args) and 'margins' not in config.flags
    # every field is a flag of the script (or derived): a missing one is a programming error, named
    del args.seed
    with pytest.raises(TypeError, match='SoftmaxConfig needs the flags seed'):
        train_softmax.SoftmaxConfig.from_args(args, margins=None)
    triplet = train_triplet.TripletConfig.from_args(train_triplet.parse_arguments(['--alpha', '0.3']))
    assert isinstance(triplet, config_lib.TrainingConfig) and triplet.alpha == 0.3
    with pytest.raises(TypeError):
        train_triplet.TripletConfig.from_args(argparse.Namespace(alpha=0.3))


def test_trim_every_target_result_file(tmp_path):
    for name in ('lfw', 'few'):
        (tmp_path / ('%s_result.txt' % name)).write_text('2\t0.5\t0.1\n4\t0.6\t0.2\n6\t0.7\t0.3\n')
    lfw_check.trim_lfw_results(str(tmp_path), 4, ['lfw', 'few', 'absent'])
    for name in ('lfw', 'few'):
        assert (tmp_path / ('%s_result.txt' % name)).read_text() == '2\t0.5\t0.1\n4\t0.6\t0.2\n'
