"""facenet-calibrate with the published model on real faces (ORL people aligned by the API's MTCNN
as the aligner crops them), and its threshold file read back by recognize (a gallery of other ORL
people, known faces and strangers) and by the API's threshold reader."""
import contextlib
import io
import json
import os

import pytest

from facenet_tf import api, calibrate, recognize
from facenet_tf.cli import run

CALIBRATION_PEOPLE = range(1, 21)     # s1..s20, images 1-2: 40 crops, 780 pairs
GALLERY_PEOPLE = range(21, 25)        # s21..s24: gallery photo 1; shown: photo 5
STRANGERS = range(25, 29)             # s25..s28: shown (photo 5), not in the gallery


@pytest.fixture(scope='module')
def calibrated(data_dir, published_model, tmp_path_factory):
    """(folder, threshold file, record, calibrate's stdout) of the published model on 40 ORL crops."""
    base = tmp_path_factory.mktemp('calibrate')
    orl = os.path.join(data_dir, 'orl_faces')
    from PIL import Image
    with api.MTCNN(image_size=160, margin=32) as detector:
        for k in CALIBRATION_PEOPLE:
            crops = detector.align([os.path.join(orl, 's%d' % k, '%d.png' % i) for i in range(1, 3)])
            (base / 'aligned' / ('s%d' % k)).mkdir(parents=True)
            for i, crop in enumerate(crops, start=1):
                assert crop is not None
                Image.fromarray(crop).save(str(base / 'aligned' / ('s%d' % k) / ('%d.png' % i)))
    calib = base / 'calib.json'
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = run(calibrate.main, calibrate.parse_arguments([str(base / 'aligned'), published_model[1], str(calib),
                                                              '--far', '1e-2']), 'calibrate_threshold.py')
    assert code == 0, out.getvalue()
    return base, str(calib), json.loads(calib.read_text()), out.getvalue()


def test_calibration_of_the_published_model(calibrated):
    base, calib, record, out = calibrated
    assert 'Calibrating on all pairs of 40 images of 20 people (20 same-person, 760 different-person pairs)' in out
    assert record['metric'] == 'l2' and record['far'] == 0.01 and record['source'] == 'aligned'
    assert record['model'] == '20170512-110547.pb'
    assert (record['nrof_genuine'], record['nrof_impostor']) == (20, 760)
    lo, hi = record['ci95']
    assert 0.5 < lo < record['threshold'] < hi < 1.5
    assert record['tar'] > 0.5 and record['held_out_far'] < 0.05


def test_recognize_and_the_api_read_the_threshold_file(calibrated, data_dir, published_model):
    base, calib, record, _ = calibrated
    orl = os.path.join(data_dir, 'orl_faces')
    gallery = base / 'gallery'
    for k in GALLERY_PEOPLE:
        (gallery / ('s%d' % k)).mkdir(parents=True)
        for i in (1,):
            os.symlink(os.path.join(orl, 's%d' % k, '%d.png' % i), str(gallery / ('s%d' % k) / ('%d.png' % i)))
    shown = [os.path.join(orl, 's%d' % k, '5.png') for k in list(GALLERY_PEOPLE) + list(STRANGERS)]
    out = base / 'faces.jsonl'
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = recognize.main(recognize.parse_arguments([published_model[1]] + shown + [
            '--gallery', str(gallery), '--threshold_file', calib, '--output_jsonl', str(out)]))
    assert code == 0, err.getvalue()
    note = 'unknown threshold %.4f from %s: FAR 1e-2 on 780 pairs of aligned (model 20170512-110547.pb)' % (
        record['threshold'], calib)
    assert note in err.getvalue().splitlines()
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == len(shown)
    t = record['threshold']
    # the file's threshold decides: unknown exactly when farther than it (distances are rounded to 1e-4)
    assert all((r['name'] == 'unknown') == (r['distance'] > t) for r in records if abs(r['distance'] - t) > 1e-4)
    person = {r['source']: int(os.path.basename(os.path.dirname(r['source']))[1:]) for r in records}
    strangers = [r['name'] for r in records if person[r['source']] in STRANGERS]
    known = [(r['name'], 's%d' % person[r['source']]) for r in records if person[r['source']] in GALLERY_PEOPLE]
    assert strangers.count('unknown') >= 3, records
    assert sum(name == truth for name, truth in known) >= 3, records
    assert api.threshold_value(calib)[0] == t
