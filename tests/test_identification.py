"""Open-set identification (facenet_tf.identification, evaluate_identification.py): the metrics on
hand-computed cases, the seeded split, and the tool on real aligned faces embedded with the
published model."""
import contextlib
import io
import os

import numpy as np
import pytest

from facenet_tf import embeddings_file, evaluate_identification, identification
from facenet_tf.cli import command
from facenet_tf.errors import FaceNetError
from facenet_tf.identification import Scores, Split


def unit(*v):
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)


def hand_case():
    """Three enrolled people (A, B, C: the axes), three genuine probes and two impostors."""
    rows = np.stack([
        unit(1, 0, 0), unit(0, 1, 0), unit(0, 0, 1),   # gallery A, B, C
        unit(0.9, 0.1, 0),                              # genuine A: rank 1, score 0.9939
        unit(0.8, 0.6, 0),                              # genuine B: A scores 0.8 > own 0.6, rank 2
        unit(1, 0, 1),                                  # genuine C: tied with A (0.7071), rank 2
        unit(1, 0.02, 0),                               # impostor, best 0.9998 (A): above genuine A
        unit(-1, 0, 0.1),                               # impostor, best 0.0995 (C)
    ])
    split = Split(np.array([0, 1, 2]), np.array([0, 1, 2]), np.array([3, 4, 5]), np.array([0, 1, 2]),
                  np.array([6, 7]), 3)
    return rows, split


def test_scores_hand_case_ranks_ties_and_impostors():
    rows, split = hand_case()
    scores = identification.score_trial(rows, split)
    assert scores.ranks.tolist() == [1, 2, 2]  # second place, and a tie counted against the probe
    np.testing.assert_allclose(scores.genuine_scores, [0.9 / np.hypot(0.9, 0.1), 0.6, np.sqrt(0.5)], rtol=1e-6)
    np.testing.assert_allclose(scores.impostor_scores, [1 / np.hypot(1, 0.02), 0.1 / np.hypot(1, 0.1)], rtol=1e-6)


def test_metrics_hand_case():
    rows, split = hand_case()
    m = identification.metrics(identification.score_trial(rows, split), ranks=(1, 2, 5), fpirs=(0.5, 0.01))
    assert m['rank-1'] == pytest.approx(1 / 3)
    assert m['rank-2'] == 1.0 and m['rank-5'] == 1.0
    # FPIR 0.5 of 2 impostors: one may pass; the threshold is the other's best score (0.0995), which
    # genuine A (0.994, rank 1) passes; B and C are not rank 1
    assert m['threshold@FPIR=0.5'] == pytest.approx(0.1 / np.hypot(1, 0.1), rel=1e-6)
    assert m['FPIR@FPIR=0.5'] == 0.5
    assert m['DIR@FPIR=0.5'] == pytest.approx(1 / 3)
    # FPIR 0.01: no impostor may pass, the threshold is the impostor at 0.9998, above genuine A
    assert m['threshold@FPIR=0.01'] == pytest.approx(1 / np.hypot(1, 0.02), rel=1e-6)
    assert m['FPIR@FPIR=0.01'] == 0.0
    assert m['DIR@FPIR=0.01'] == 0.0


def test_threshold_ties_reject_every_tied_impostor():
    impostors = np.array([0.9, 0.5, 0.5, 0.1])
    assert identification.threshold_at_fpir(impostors, 0.25) == (0.5, 0.25)
    # two may pass, but the second and third are tied: the threshold stays at 0.5 and only one passes
    assert identification.threshold_at_fpir(impostors, 0.5) == (0.5, 0.25)
    assert identification.threshold_at_fpir(impostors, 0.75) == (0.1, 0.75)
    assert identification.threshold_at_fpir(impostors, 0.01) == (0.9, 0.0)
    # a genuine probe of rank 1 scoring exactly the threshold is not detected (strictly greater)
    m = identification.metrics(Scores(np.array([1, 1, 3]), np.array([0.5, 0.6, 0.95]), impostors),
                               ranks=(1,), fpirs=(0.5,))
    assert m['DIR@FPIR=0.5'] == pytest.approx(1 / 3)
    assert m['rank-1'] == pytest.approx(2 / 3)


def test_gallery_per_person_fuses_by_maximum():
    gallery = np.stack([unit(1, 0), unit(0.6, 0.8), unit(0, 1)])  # person 0: two images, person 1: one
    probe = unit(0.5, 0.85)[None]
    scores = identification.person_scores(probe, gallery, np.array([0, 0, 1]), 2)
    np.testing.assert_allclose(scores, [[max(0.5 * 0.6 + 0.85 * 0.8, 0.5) / np.hypot(0.5, 0.85),
                                         0.85 / np.hypot(0.5, 0.85)]], rtol=1e-6)


def people_labels():
    """Labels of 40 people: 10 with 1 image, 10 with 2, 10 with 3, 10 with 5 (rows shuffled)."""
    labels = np.repeat(np.arange(40), [1] * 10 + [2] * 10 + [3] * 10 + [5] * 10)
    return np.random.default_rng(5).permutation(labels)


def test_split_sizes_and_roles():
    labels = people_labels()
    split = identification.split_trial(labels, np.random.default_rng((0, 0)), 12, gallery_per_person=2)
    enrolled = np.unique(labels[split.gallery])
    assert len(enrolled) == 12 and np.all(np.isin(enrolled, np.arange(20, 40)))  # only people with >= 3 images
    assert len(split.gallery) == 24 and np.bincount(split.gallery_labels).tolist() == [2] * 12
    assert np.all(np.diff(split.gallery_labels) >= 0)
    # every row has exactly one role; impostors are every image of the 28 people not enrolled
    roles = np.concatenate([split.gallery, split.genuine, split.impostors])
    assert sorted(roles.tolist()) == list(range(len(labels)))
    assert set(labels[split.impostors]) == set(range(40)) - set(enrolled.tolist())
    assert np.all(np.isin(labels[split.genuine], enrolled))
    assert np.array_equal(enrolled[split.genuine_labels], labels[split.genuine])
    assert len(split.genuine) == np.isin(labels, enrolled).sum() - 24


def test_split_is_seeded():
    labels = people_labels()
    a = identification.split_trial(labels, np.random.default_rng((3, 1)), 10)
    b = identification.split_trial(labels, np.random.default_rng((3, 1)), 10)
    c = identification.split_trial(labels, np.random.default_rng((3, 2)), 10)
    assert all(np.array_equal(x, y) for x, y in zip(a[:5], b[:5]))
    assert not np.array_equal(a.gallery, c.gallery)


def test_split_refusals():
    labels = people_labels()
    with pytest.raises(FaceNetError, match='31 people to enrol but only 30 have at least 2 images'):
        identification.split_trial(labels, np.random.default_rng(0), 31)
    with pytest.raises(FaceNetError, match='no impostor probes'):
        identification.split_trial(np.repeat(np.arange(4), 2), np.random.default_rng(0), 4)


def test_run_trials_mean_and_spread():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((60, 32))
    labels = np.repeat(np.arange(60), 3)
    emb = centres[labels] + 0.25 * rng.standard_normal((len(labels), 32))
    results, sizes = identification.run_trials(emb, labels, trials=3, seed=1, nrof_enrolled=30)
    assert sizes == [dict(gallery=30, genuine=60, impostors=90)] * 3
    summary = identification.summary(results)
    assert summary['rank-1'][0] == 1.0 and summary['rank-1'][1] == 0.0
    assert set(summary) >= {'rank-5', 'DIR@FPIR=0.01', 'DIR@FPIR=0.001', 'threshold@FPIR=0.01'}
    again, _ = identification.run_trials(emb, labels, trials=2, seed=1, nrof_enrolled=30)
    assert again == results[:2]  # trial t depends on (seed, t) only


def run_tool(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = command(evaluate_identification.main, evaluate_identification.parse_arguments, argv)
    return code, out.getvalue(), err.getvalue()


def test_tool_flag_and_input_errors(tmp_path):
    code, _, err = run_tool([str(tmp_path), '--nrof_enrolled', '3'])
    assert code == 2 and 'is an image folder: give the model to embed it with' in err
    code, _, err = run_tool([str(tmp_path / 'missing.h5')])
    assert code == 2 and 'missing.h5: not found (expected an aligned folder or an embeddings file)' in err
    with pytest.raises(SystemExit):
        evaluate_identification.parse_arguments(['x.h5', '--fpir', '0.01,1'])
    with pytest.raises(SystemExit):
        evaluate_identification.parse_arguments(['x.h5', '--rank', '0'])
    bad = tmp_path / 'bad.h5'
    bad.write_bytes(b'\x89HDF\r\n\x1a\n' + b'\0' * 64)
    code, _, err = run_tool([str(bad)])
    assert code == 2 and 'bad.h5' in err and ': error: ' in err and err.count('\n') == 1


def test_tool_notes_an_fpir_too_small_for_the_impostors(tmp_path):
    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(30), 2)
    emb = rng.standard_normal((30, 16))[labels] + 0.2 * rng.standard_normal((60, 16))
    names = ['p%02d' % i for i in range(30)]
    stored = tmp_path / 'synthetic.h5'
    attrs = dict(model='none', image_size=160, use_fixed_image_standardization=False, use_flipped_images=False,
                 precision='fp32', batch_size=100, data_dir=str(tmp_path), shard='')
    embeddings_file.write(str(stored), embeddings_file.Embeddings(
        emb.astype(np.float32), labels, ['%s/%d.png' % (names[i], j % 2) for j, i in enumerate(labels)], names, attrs))
    code, out, err = run_tool([str(stored), '--nrof_enrolled', '20', '--trials', '2', '--fpir', '0.05,0.01'])
    assert code == 0, err
    assert 'note: FPIR 0.01 needs at least 100 impostor probes, a trial has 20' in err
    assert 'note: FPIR 0.05' not in err
    assert ('Per trial: 20 enrolled of 30 eligible people, 1 gallery image each; 20 genuine probes, 20 impostor '
            'probes (10 people not enrolled)') in out
    code, _, err = run_tool([str(stored), '--nrof_enrolled', '31'])
    assert code == 2 and '31 people to enrol but only 30 have at least 2 images' in err


@pytest.fixture(scope='module')
def celebrity_folder(data_dir, tmp_path_factory):
    """Aligned faces of 16 people (links into ../shared): 10 with 4 images, 6 with 1."""
    source = os.path.join(data_dir, 'glint_celebrity_24id_112')
    folder = tmp_path_factory.mktemp('celebrities')
    for i, person in enumerate(sorted(os.listdir(source))[:16]):
        os.makedirs(folder / person)
        for name in sorted(os.listdir(os.path.join(source, person)))[:4 if i < 10 else 1]:
            os.symlink(os.path.join(source, person, name), folder / person / name)
    return str(folder)


def test_tool_on_real_faces_from_a_folder_and_an_embeddings_file(celebrity_folder, published_model, tmp_path):
    """The folder embedded with the published model (load_rows, the tool's folder input) and written
    as an embeddings file: the tool's table on that file, on the folder itself, and the library run
    on the rows agree."""
    pb = published_model[1]
    emb, labels, class_names, description = evaluate_identification.load_rows(
        evaluate_identification.parse_arguments([celebrity_folder, pb]))
    assert emb.shape == (46, 128) and np.bincount(labels).tolist() == [4] * 10 + [1] * 6
    assert description == 'folder %s (model %s)' % (celebrity_folder, pb)
    from facenet_tf.dataset import get_dataset, get_image_paths_and_labels
    paths, _ = get_image_paths_and_labels(get_dataset(celebrity_folder))
    stored = tmp_path / 'celebrities.h5'
    attrs = dict(model=pb, image_size=160, use_fixed_image_standardization=False, use_flipped_images=False,
                 precision='fp32', batch_size=100, data_dir=celebrity_folder, shard='')
    embeddings_file.write(str(stored), embeddings_file.Embeddings(
        emb, labels, [os.path.relpath(p, celebrity_folder) for p in paths], class_names, attrs))

    flags = ['--nrof_enrolled', '8', '--trials', '3', '--fpir', '0.1', '--rank', '1,3']
    code, out, err = run_tool([str(stored)] + flags)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == 'Open-set identification: 3 trials (seed 0) on 46 images of 16 people'
    assert lines[1] == ('Per trial: 8 enrolled of 10 eligible people, 1 gallery image each; 24 genuine probes, '
                        '14 impostor probes (8 people not enrolled)')
    rows = {line.split(' | ')[0][2:]: [float(v) for v in line.strip('| ').split(' | ')[1:]] for line in lines[4:]}
    assert rows['closed-set rank-1'][0] >= 0.9  # the published model knows these faces apart
    assert rows['closed-set rank-3'][0] >= rows['closed-set rank-1'][0]
    assert 0 < rows['DIR at FPIR 0.1 (rank 1)'][0] <= rows['closed-set rank-1'][0]
    assert rows['realised FPIR at target 0.1'][2] <= 0.1
    assert 'note: FPIR 0.1 needs at least 10 impostor probes' not in err
    code, from_folder, err = run_tool([celebrity_folder, pb] + flags)  # the folder itself, embedded again
    assert code == 0, err
    assert from_folder.splitlines()[1:] == lines[1:]
    results, _ = identification.run_trials(emb, labels, trials=3, nrof_enrolled=8, ranks=(1, 3), fpirs=(0.1,))
    summary = identification.summary(results)
    assert rows['closed-set rank-1'] == pytest.approx(summary['rank-1'], abs=5e-5)
    assert rows['DIR at FPIR 0.1 (rank 1)'] == pytest.approx(summary['DIR@FPIR=0.1'], abs=5e-5)
