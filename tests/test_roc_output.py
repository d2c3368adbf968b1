"""ROC output: the CSV points and a matplotlib PNG with a log false-accept axis, VAL@FAR and EER marked,
on the classic lfw.evaluate results carried in tests/data."""
import argparse
import os

import numpy as np
import pytest
from PIL import Image

from facenet_tf import evaluation, roc_output, validate
from facenet_tf.errors import FaceNetError

KEY = 'metric0_subtractmean0'


@pytest.fixture(scope='module')
def classic(test_data_dir):
    with np.load(os.path.join(test_data_dir, 'classic_lfw_evaluate.npz')) as d:
        return {key: d[key] for key in d.files}


def _marker(ax, label_start):
    """(x, y) of the one-point line whose legend label starts with `label_start`."""
    found = [line for line in ax.get_lines() if line.get_label().startswith(label_start)]
    assert len(found) == 1
    return tuple(float(v[0]) for v in found[0].get_data())


def test_figure_has_a_log_far_axis_and_the_two_points(classic):
    fpr, tpr = classic[KEY + '_fpr'], classic[KEY + '_tpr']
    val, far, eer = float(classic[KEY + '_val']), float(classic[KEY + '_far']), float(classic[KEY + '_eer'])
    fig = roc_output.plot_roc(fpr, tpr, 'model: accuracy 0.9442', val=val, far=far, eer=eer)
    ax = fig.axes[0]
    assert ax.get_xscale() == 'log' and ax.get_yscale() == 'linear'
    left, right = ax.get_xlim()
    assert right == 1.0 and 0 < left <= min(far, fpr[fpr > 0].min()) and left <= 1e-4
    assert _marker(ax, 'VAL') == pytest.approx((far, val))
    x, y = _marker(ax, 'EER')
    assert (x, y) == pytest.approx((eer, 1.0 - eer))
    order = np.argsort(fpr, kind='mergesort')
    assert np.interp(eer, fpr[order], tpr[order]) == pytest.approx(1.0 - eer, abs=5e-3)  # on the curve
    curve = ax.get_lines()[0].get_data()[0]
    assert np.all(curve >= left)              # rates of 0 are drawn at the left end, not dropped
    assert ax.get_title() == 'model: accuracy 0.9442'
    assert 'log' in ax.get_xlabel()


def test_validate_report_writes_csv_and_png(classic, tmp_path, capsys):
    """validate's report on pairs with the classic distances: the CSV matches the classic ROC, the PNG
    is a 480 x 480 image with the VAL@FAR marker's red in it, the title names model and accuracy."""
    dist, issame = classic['distance_metric0'], classic['issame']
    emb = np.zeros((2 * len(dist), 1))
    emb[0::2, 0] = np.sqrt(dist)              # squared L2 distance of rows 2i, 2i+1 is dist[i]
    args = argparse.Namespace(lfw_nrof_folds=10, distance_metric=0, subtract_mean=False,
                              roc_output=str(tmp_path / 'roc.png'), model='/models/20180402-114759/')
    validate.report(args, emb, issame, None)
    out = capsys.readouterr().out
    csv, png = str(tmp_path / 'roc.csv'), str(tmp_path / 'roc.png')
    assert out.splitlines()[-1] == 'ROC written to %s and %s' % (csv, png)
    rows = np.loadtxt(csv, delimiter=',', skiprows=1)
    np.testing.assert_allclose(rows[:, 0], evaluation.ROC_THRESHOLDS, atol=1e-6)
    np.testing.assert_allclose(rows[:, 1], classic[KEY + '_fpr'], atol=1e-6)
    np.testing.assert_allclose(rows[:, 2], classic[KEY + '_tpr'], atol=1e-6)
    with Image.open(png) as img:
        assert img.format == 'PNG' and img.size == (480, 480)
        pixels = np.asarray(img.convert('RGB')).reshape(-1, 3).astype(int)
    red = np.array([0xd6, 0x27, 0x28])        # matplotlib's tab:red, the VAL@FAR marker
    assert np.sum(np.all(np.abs(pixels - red) <= 4, axis=1)) >= 20
    assert len(np.unique(pixels, axis=0)) > 50   # a drawn figure, not a blank canvas
    assert sorted(os.listdir(tmp_path)) == ['roc.csv', 'roc.png']   # no temporary file left


def test_title_of_validate_names_model_and_accuracy(classic, tmp_path, monkeypatch):
    seen = {}
    real = roc_output.plot_roc

    def keep(*a, **kw):
        seen['fig'] = real(*a, **kw)
        return seen['fig']
    monkeypatch.setattr(roc_output, 'plot_roc', keep)
    dist, issame = classic['distance_metric0'], classic['issame']
    emb = np.zeros((2 * len(dist), 1))
    emb[0::2, 0] = np.sqrt(dist)
    args = argparse.Namespace(lfw_nrof_folds=10, distance_metric=0, subtract_mean=False,
                              roc_output=str(tmp_path / 'roc.csv'), model='/models/20180402-114759/')
    validate.report(args, emb, issame, None)
    title = seen['fig'].axes[0].get_title()
    assert title.startswith('20180402-114759: accuracy %.4f, AUC ' % np.mean(classic[KEY + '_accuracy']))


def test_zero_rates_and_missing_folder(tmp_path):
    fig = roc_output.plot_roc(np.array([0.0, 0.0, 0.5, 1.0]), np.array([0.0, 0.6, 0.9, 1.0]), far=0.0,
                              val=0.6, eer=None)
    ax = fig.axes[0]
    assert ax.get_xlim()[0] == roc_output.MIN_FAR
    assert _marker(ax, 'VAL') == pytest.approx((roc_output.MIN_FAR, 0.6))
    assert not [line for line in ax.get_lines() if line.get_label().startswith('EER')]
    with pytest.raises(FaceNetError, match='folder of --roc_output does not exist'):
        roc_output.write_roc(str(tmp_path / 'no' / 'roc.csv'), [0.0], [0.0], [0.0])
