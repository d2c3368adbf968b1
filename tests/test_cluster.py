"""cluster.py on LFW people with 10+ images (people of View 1 DevTest): the published model groups
them by person (pairwise precision/recall, NMI), an untrained network clearly does not; the output
folders, clusters.csv and the one-line errors."""
import contextlib
import csv
import io
import os
import re

import pytest

from facenet_tf import cluster
from facenet_tf import clustering, keras_import, model_freeze, tf_setup
from facenet_tf.cli import run
from facenet_tf.models import small_cnn

PEOPLE = ('Bill_McBride', 'Ian_Thorpe', 'Jacques_Rogge', 'Mohammad_Khatami', 'Muhammad_Ali', 'Richard_Gere',
          'Tom_Cruise', 'Ann_Veneman')
PHOTOS = 8


def _cluster(argv):
    """Run cluster.py in-process: (printed lines, the evaluation dict or None)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        cluster.main(cluster.parse_arguments([str(a) for a in argv]))
    text = out.getvalue()
    m = re.search(r'evaluation on (\d+) faces of (\d+) people: pairwise precision ([\d.]+), recall ([\d.]+), '
                  r'F1 ([\d.]+), NMI ([\d.]+)', text)
    keys = ('faces', 'people', 'precision', 'recall', 'f1', 'nmi')
    return text, err.getvalue(), (dict(zip(keys, [float(g) for g in m.groups()])) if m else None)


def _rows(output_dir):
    with open(os.path.join(output_dir, clustering.CSV_NAME)) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope='module')
def photos(data_dir, tmp_path_factory):
    """8 photos each of 8 LFW DevTest people, one folder per person."""
    base = tmp_path_factory.mktemp('cluster') / 'photos'
    for person in PEOPLE:
        (base / person).mkdir(parents=True)
        for i in range(1, PHOTOS + 1):
            name = '%s_%04d.jpg' % (person, i)
            os.symlink(os.path.join(data_dir, 'lfw_deepfunneled', person, name), str(base / person / name))
    return base


@pytest.fixture(scope='module')
def detected(photos, published_model):
    """cluster.py with the published model on the photos (detection, DBSCAN with its defaults)."""
    output = photos.parent / 'dbscan'
    return output, _cluster([published_model[1], photos, output, '--evaluate'])


@pytest.fixture(scope='module')
def main_crops(detected):
    """The main face crop of every photo (from the first run's clusters.csv), one folder per person."""
    output, _ = detected
    base = output.parent / 'main_crops'
    for row in _rows(output):
        if row['main'] == '1':
            person = os.path.basename(os.path.dirname(row['source']))
            (base / person).mkdir(parents=True, exist_ok=True)
            os.symlink(os.path.realpath(os.path.join(output, row['crop'])),
                       str(base / person / os.path.basename(row['crop'])))
    return base


def test_published_model_groups_the_people(detected):
    output, (text, err, score) = detected
    assert score['people'] == len(PEOPLE) and score['faces'] == len(PEOPLE) * PHOTOS
    assert score['precision'] >= 0.95 and score['recall'] >= 0.9 and score['nmi'] >= 0.95, score
    assert 'Detecting and embedding: %d photos in' % (len(PEOPLE) * PHOTOS) in err


def test_output_folders_and_csv(detected):
    output, (text, _, _) = detected
    rows = _rows(output)
    m = re.search(r'(\d+) faces: (\d+) clusters \(largest [\d, ]+\), (\d+) noise faces', text)
    assert m and int(m.group(1)) == len(rows) >= len(PEOPLE) * PHOTOS
    clusters = sorted({int(r['cluster']) for r in rows})
    assert clusters[0] in (-1, 0) and clusters[-1] == int(m.group(2)) - 1
    sizes = [sum(int(r['cluster']) == c for r in rows) for c in range(int(m.group(2)))]
    assert sizes == sorted(sizes, reverse=True) and sum(r['cluster'] == '-1' for r in rows) == int(m.group(3))
    for r in rows:
        folder = clustering.folder_name(int(r['cluster']))
        assert r['crop'].startswith(folder + '/')
        path = os.path.join(output, r['crop'])
        assert os.path.islink(path) and os.path.getsize(path) > 1000
        assert int(r['x1']) < int(r['x2']) and int(r['y1']) < int(r['y2']) and float(r['score']) > 0.5
    mains = {}
    for r in rows:
        mains[r['source']] = mains.get(r['source'], 0) + int(r['main'])
    assert len(mains) == len(PEOPLE) * PHOTOS and set(mains.values()) == {1}
    assert sorted(os.listdir(output)) == sorted({clustering.folder_name(c) for c in clusters} |
                                                {clustering.CSV_NAME, clustering.CROPS_FOLDER})


def test_an_untrained_network_scores_clearly_worse(detected, main_crops, tmp_path):
    """small_cnn with random weights on the same main-face crops, even told the number of people
    (agglomerative clustering into 8 groups), scores far below the published model with DBSCAN."""
    untrained = str(tmp_path / 'untrained.pb')
    tf1 = tf_setup.configure().compat.v1
    with tf1.Graph().as_default():
        tf1.set_random_seed(0)
        keras_import.build_classic_graph(small_cnn, 128, 160)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            model_freeze.write_graph_def(model_freeze.freeze_session(sess), untrained)
    _, _, score = _cluster([untrained, main_crops, tmp_path / 'untrained', '--aligned', '--method', 'agglomerative',
                            '--n_clusters', len(PEOPLE), '--min_samples', 1, '--evaluate'])
    published = detected[1][2]
    assert score['faces'] == published['faces'] == len(PEOPLE) * PHOTOS
    assert score['f1'] <= 0.4 and score['nmi'] <= 0.6, score
    assert published['f1'] - score['f1'] >= 0.5 and published['nmi'] - score['nmi'] >= 0.4, (published, score)


def test_one_line_errors(photos, tmp_path, capsys):
    (tmp_path / 'used').mkdir()
    (tmp_path / 'used' / 'x').write_text('')
    code = run(cluster.main, cluster.parse_arguments(['model.pb', str(photos), str(tmp_path / 'used')]), 'cluster.py')
    assert code == 2
    assert capsys.readouterr().err == ('cluster.py: error: %s already exists and is not an empty folder '
                                       '(give a new output folder)\n' % (tmp_path / 'used'))
    with pytest.raises(SystemExit):
        cluster.parse_arguments(['m', 'in', 'out', '--n_clusters', '3'])
    assert '--n_clusters needs --method agglomerative' in capsys.readouterr().err


def test_pairwise_scores_on_known_labels():
    """Pairwise precision/recall by hand: truth a a a b b; clusters {0,1} {2,3} noise(4)."""
    s = clustering.scores(['a', 'a', 'a', 'b', 'b'], [0, 0, 1, 1, -1])
    assert s['precision'] == pytest.approx(1 / 2) and s['recall'] == pytest.approx(1 / 4)
    assert clustering.scores(['a', 'a', 'b', None], [3, 3, 5, 3])['precision'] == 1.0
    assert list(clustering.relabel_by_size([7, 7, -1, 2, 2, 2])) == [1, 1, -1, 0, 0, 0]
