"""The training package without training runs: the classic script-level names, recipe files
(--config: the override rule, unknown keys), the best checkpoint kept in best/, the epoch progress
lines."""
import io
import os

import numpy as np
import pytest
import tensorflow as tf

import train_softmax
import train_tripletloss
from facenet_tf import model_io, training
from facenet_tf.training import softmax_training, triplets
from facenet_tf.errors import FaceNetError

tf1 = tf.compat.v1
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = os.path.join(ROOT, 'data', 'recipes')


def test_classic_script_names_are_importable():
    """Each public name of the classic scripts that has a counterpart here."""
    from train_tripletloss import (get_learning_rate_from_file, main, parse_arguments,  # noqa: F401
                                   sample_people, save_variables_and_metagraph, select_triplets)
    from train_softmax import (filter_dataset, find_threshold, get_learning_rate_from_file,  # noqa: F401,F811
                               main, parse_arguments, save_variables_and_metagraph)
    assert train_tripletloss.select_triplets is triplets.select_triplets
    assert train_tripletloss.sample_people is triplets.sample_people
    assert train_softmax.find_threshold is softmax_training.find_threshold
    for script in (train_softmax, train_tripletloss):
        assert script.save_variables_and_metagraph is model_io.save_variables_and_metagraph
        assert script.get_learning_rate_from_file is training.get_learning_rate_from_file
    # classic calls
    dataset = [softmax_training.dataset_io.ImageClass('p%d' % i, ['p%d/%d.png' % (i, j) for j in range(4)])
               for i in range(5)]
    np.random.seed(0)
    paths, num_per_class = train_tripletloss.sample_people(dataset, 3, 2)
    assert len(paths) == 6 and num_per_class == [2, 2, 2]
    emb = np.eye(6, dtype=np.float32)
    selected, num_trips, nrof = train_tripletloss.select_triplets(emb, num_per_class, paths, 3, 2.5)
    assert num_trips == 3 and nrof == len(selected) == 3


def test_classic_filter_dataset_returns_the_dataset(tmp_path):
    import h5py
    dataset = [softmax_training.dataset_io.ImageClass('p%d' % i, ['p%d/%d.png' % (i, j) for j in range(4)])
               for i in range(3)]
    filename = str(tmp_path / 'filter.h5')
    with h5py.File(filename, 'w') as f:
        f.create_dataset('distance_to_center', data=np.arange(12, dtype=np.float32))
        f.create_dataset('label_list', data=np.repeat(np.arange(3), 4))
        f.create_dataset('image_list', data=np.array([p for c in dataset for p in c.image_paths], dtype='S'))
    kept = train_softmax.filter_dataset(dataset, filename, 50.0, 1)
    assert isinstance(kept, list) and [len(c) for c in kept] == [4, 2]


def _write(tmp_path, text):
    path = tmp_path / 'recipe.toml'
    path.write_text(text)
    return str(path)


def test_config_values_and_command_line_override(tmp_path):
    config = _write(tmp_path, 'optimizer = "ADAM"\nlearning_rate = 0.05\nmax_nrof_epochs = 7\n'
                              'random_flip = true\nrandom_crop = false\nloss = "cosface"\nmargin_s = 30\n')
    args = train_softmax.parse_arguments(['--config', config])
    assert (args.optimizer, args.learning_rate, args.max_nrof_epochs, args.loss) == ('ADAM', 0.05, 7, 'cosface')
    assert args.random_flip and not args.random_crop and args.margin_s == 30.0
    assert isinstance(args.margin_s, float) and isinstance(args.max_nrof_epochs, int)
    # flags on the command line win, before or after --config
    args = train_softmax.parse_arguments(['--max_nrof_epochs', '2', '--config', config, '--optimizer', 'MOM'])
    assert (args.max_nrof_epochs, args.optimizer, args.learning_rate) == (2, 'MOM', 0.05)
    # without --config: the classic defaults
    args = train_softmax.parse_arguments([])
    assert (args.optimizer, args.max_nrof_epochs, args.config) == ('ADAGRAD', 100, None)


def test_config_errors_are_one_line(tmp_path):
    with pytest.raises(FaceNetError, match=r"unknown key 'people_per_batch' \(not a flag of this script\)"):
        train_softmax.parse_arguments(['--config', _write(tmp_path, 'people_per_batch = 30\n')])
    with pytest.raises(FaceNetError, match='unknown key'):
        train_tripletloss.parse_arguments(['--config', _write(tmp_path, 'loss = "cosface"\n')])
    with pytest.raises(FaceNetError, match='random_flip must be true or false'):
        train_tripletloss.parse_arguments(['--config', _write(tmp_path, 'random_flip = 1\n')])
    with pytest.raises(FaceNetError, match='config file not found'):
        train_tripletloss.parse_arguments(['--config', str(tmp_path / 'none.toml')])
    with pytest.raises(FaceNetError, match='recipe.toml'):
        train_tripletloss.parse_arguments(['--config', _write(tmp_path, 'alpha = \n')])
    with pytest.raises(FaceNetError, match='recipe.toml: optimizer = SGD is not one of'):   # names the file
        train_tripletloss.parse_arguments(['--config', _write(tmp_path, 'optimizer = "SGD"\n')])


def test_recipe_files_hold_only_flags():
    softmax = train_softmax.parse_arguments(['--config', os.path.join(RECIPES, 'cosface_lfw_view1.toml')])
    assert (softmax.loss, softmax.model_def, softmax.max_nrof_epochs, softmax.margin_s) == \
        ('cosface', 'models.small_cnn_flat', 60, 30.0)
    assert softmax.lfw_use_moving_averages and softmax.random_crop and not softmax.random_erase
    triplet = train_tripletloss.parse_arguments(['--config', os.path.join(RECIPES, 'triplet_lfw_view1.toml'),
                                                 '--triplet_mining', 'rounds'])
    assert (triplet.triplet_mining, triplet.triplet_selection, triplet.images_per_person) == ('rounds', 'semihard', 6)


def test_best_checkpoint_kept_in_best_folder(tmp_path):
    model_dir, subdir = str(tmp_path / 'run'), 'run'
    os.makedirs(model_dir)
    lines = []
    with tf.Graph().as_default(), tf1.Session() as sess:
        var = tf1.get_variable('w', initializer=np.float32([0.0]))
        tf.identity(tf1.placeholder(tf.float32, name='input') * var, name='embeddings')
        saver = tf1.train.Saver([var], max_to_keep=3)
        best = training.BestCheckpoint(model_dir, subdir)
        sess.run(tf1.global_variables_initializer())
        kept = []
        for epoch, accuracy in enumerate([0.6, 0.8, 0.7, 0.8, 0.65], start=1):
            sess.run(var.assign([float(epoch)]))
            prefix = training.save_checkpoint(sess, saver, None, model_dir, subdir, epoch)
            kept.append(best.update(prefix, accuracy, accuracy / 2, log=lines.append))
    assert kept == [True, True, False, False, False]          # a tie keeps the earlier epoch
    assert lines[-1] == 'Best LFW accuracy so far (0.80000): checkpoint 2 kept in %s' % best.folder
    folder = os.path.join(model_dir, 'best')
    assert sorted(os.listdir(folder)) == ['best.txt', 'checkpoint', 'model-run.ckpt-2.data-00000-of-00001',
                                          'model-run.ckpt-2.index', 'model-run.meta']
    assert open(os.path.join(folder, 'best.txt')).read() == '2\t0.80000\t0.40000\n'
    # the classic last 3 stay in the model folder, which still loads its newest checkpoint
    assert model_io.get_model_filenames(model_dir)[1] == 'model-run.ckpt-5'
    assert sorted(f for f in os.listdir(model_dir) if f.endswith('.index')) == [
        'model-run.ckpt-%d.index' % e for e in (3, 4, 5)]
    # best/ loads as a model folder
    assert model_io.get_model_filenames(folder) == ('model-run.meta', 'model-run.ckpt-2')
    with tf.Graph().as_default(), tf1.Session() as sess:
        model_io.load_model(folder, session=sess)
        np.testing.assert_array_equal(sess.run('w:0'), [2.0])


def test_epoch_progress_lines():
    stream = io.StringIO()
    progress = training.EpochProgress(3, 4, interval=1e9, stream=stream)
    for batch in range(4):
        progress.update(10 + batch, 12, 1.5 + batch, 0.01)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2                      # the first and the last step
    assert lines[0].startswith('Epoch: [3][1/4]\tstep 10\tloss 1.5000\tlr 0.01\t')
    assert lines[1].startswith('Epoch: [3][4/4]\tstep 13\tloss 4.5000\tlr 0.01\t') and 'img/s\tETA 0:00' in lines[1]
    assert progress.summary().startswith('Epoch 3: 4 steps, 48 images in ')
    assert progress.summary().endswith('mean loss 3.0000')
