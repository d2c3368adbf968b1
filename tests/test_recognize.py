"""recognize.py on real faces with the published model: a test video assembled from LFW photos
(segments of one known person, two people side by side, an unknown person, no face) is named with a
gallery of other photos of the same people; the JSON lines, the annotated video, bad input, a
classifier file, the gallery cache, and the short real street clip end to end."""
import contextlib
import io
import json
import os

import cv2
import numpy as np
import pytest

from facenet_tf import recognize
from facenet_tf import classify
from facenet_tf import faces as faces_lib, gallery as gallery_lib
from facenet_tf.precision import resolve_precision

FPS = 1.0
SIZE = (320, 240)
KNOWN = ('Colin_Powell', 'Serena_Williams', 'Tony_Blair')   # gallery people; Tony Blair is never shown
STRANGER = 'Gerhard_Schroeder'                              # in the video, not in the gallery
GALLERY_PHOTOS = (1, 2, 3)
# segments: (label, [(person, photo number) per face] per frame)
SEGMENTS = [
    ('powell', [[('Colin_Powell', i)] for i in (10, 11, 12)]),
    ('williams', [[('Serena_Williams', i)] for i in (10, 11, 12)]),
    ('both', [[('Colin_Powell', i), ('Serena_Williams', i)] for i in (13, 14)]),
    ('stranger', [[(STRANGER, i)] for i in (1, 2)]),
    ('empty', [[]]),
]
CLIP = os.path.join('misc_faces', 'facenet_pytorch', 'examples', 'video.mp4')


def _photo(data_dir, person, number):
    path = os.path.join(data_dir, 'lfw_deepfunneled', person, '%s_%04d.jpg' % (person, number))
    return cv2.imread(path)


def _frame(data_dir, faces):
    """A 320x240 BGR frame: one photo at 240x240 in the middle, two at 160x160 side by side, or an
    empty gradient."""
    w, h = SIZE
    frame = np.tile(np.linspace(40, 200, w, dtype=np.uint8)[None, :, None], (h, 1, 3))
    if len(faces) == 1:
        frame[:, (w - h) // 2:(w + h) // 2] = cv2.resize(_photo(data_dir, *faces[0]), (h, h),
                                                         interpolation=cv2.INTER_AREA)
    for k, face in enumerate(faces if len(faces) == 2 else []):
        frame[40:200, 160 * k:160 * (k + 1)] = cv2.resize(_photo(data_dir, *face), (160, 160),
                                                          interpolation=cv2.INTER_AREA)
    return frame


@pytest.fixture(scope='module')
def case(data_dir, tmp_path_factory):
    """(folder, video path, truth: per frame (segment, known people shown, left to right)) with the
    gallery in folder/gallery."""
    base = tmp_path_factory.mktemp('recognize')
    for person in KNOWN:
        (base / 'gallery' / person).mkdir(parents=True)
        for i in GALLERY_PHOTOS:
            name = '%s_%04d.jpg' % (person, i)
            os.symlink(os.path.join(data_dir, 'lfw_deepfunneled', person, name), str(base / 'gallery' / person / name))
    video = str(base / 'people.avi')
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*'MJPG'), FPS, SIZE)
    truth = []
    for label, frames in SEGMENTS:
        for faces in frames:
            writer.write(_frame(data_dir, faces))
            truth.append((label, [classify.display_name(p) for p, _ in faces if p in KNOWN]))
    writer.release()
    (base / 'broken.jpg').write_text('not an image')
    (base / 'broken.mp4').write_bytes(b'\x00' * 1000)
    return base, video, truth


def _recognize(argv):
    """Run recognize.py in-process: (exit code, stderr text)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = recognize.main(recognize.parse_arguments([str(a) for a in argv]))
    return code, err.getvalue()


def _records(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope='module')
def gallery_run(case, published_model):
    """The test video plus bad inputs, named with the gallery, annotated as an .mp4."""
    base, video, _ = case
    out = base / 'faces.jsonl'
    code, err = _recognize([published_model[1], video, base / 'missing.jpg', base / 'broken.jpg',
                            base / 'broken.mp4', '7', '--gallery', base / 'gallery', '--output_jsonl', out,
                            '--annotate', base / 'annotated.mp4'])
    return code, err, _records(out)


def _subjects(records, frame, people):
    """{person: record} of the photo subjects in a frame: the largest face of the frame for one
    photo; for two photos side by side, the largest face of each half (left: the first person)."""
    faces = [r for r in records if r['frame'] == frame]
    area = (lambda r: (r['box'][2] - r['box'][0]) * (r['box'][3] - r['box'][1]))
    halves = [faces] if len(people) == 1 else \
        [[r for r in faces if (r['box'][0] + r['box'][2]) / 2 < SIZE[0] / 2 * (k + 1) and
          (r['box'][0] + r['box'][2]) / 2 >= SIZE[0] / 2 * k] for k in range(2)]
    return {p: max(half, key=area) for p, half in zip(people, halves) if half}


def segment_scores(records, truth):
    """Per segment: (precision, recall) of the known names. A face named a known person is right
    only when it is that person's photo in the frame (a face of the background named so is wrong);
    a person shown is found when that face bears the name."""
    known = {classify.display_name(p) for p in KNOWN}
    scores = {}
    for label in [s for s, _ in SEGMENTS]:
        frames = [i for i, (seg, _) in enumerate(truth) if seg == label]
        named = right = expected = found = 0
        for f in frames:
            subjects = _subjects(records, f, truth[f][1])
            for r in records:
                if r['frame'] == f and r['name'] in known:
                    named += 1
                    right += subjects.get(r['name']) is r
            expected += len(truth[f][1])
            found += sum(subjects.get(p, {}).get('name') == p for p in truth[f][1])
        scores[label] = (right / named if named else 1.0, found / expected if expected else 1.0)
    return scores


def test_names_per_segment_are_right_and_the_stranger_is_unknown(case, gallery_run):
    _, _, truth = case
    code, err, records = gallery_run
    assert code == 0, err
    scores = segment_scores(records, truth)
    for label, (precision, recall) in scores.items():
        assert precision == 1.0 and recall == 1.0, (label, scores)
    stranger = [r for r in records if truth[r['frame']][0] == 'stranger']
    assert len(stranger) >= 2 and all(r['name'] == gallery_lib.UNKNOWN for r in stranger)
    assert all(r['distance'] > 0.9 for r in stranger)
    assert not [r for r in records if truth[r['frame']][0] == 'empty']
    assert 'frames: 11 read, 11 recognised, 1 without faces' in err


def test_json_lines_validate(case, gallery_run):
    _, video, truth = case
    _, _, records = gallery_run
    assert records
    for r in records:
        assert set(r) == {'source', 'frame', 'time', 'box', 'score', 'landmarks', 'name', 'distance', 'probability'}
        assert r['source'] == video and 0 <= r['frame'] < len(truth)
        assert r['time'] == pytest.approx(r['frame'] / FPS)
        x1, y1, x2, y2 = r['box']
        assert -5 <= x1 < x2 <= SIZE[0] + 5 and -5 <= y1 < y2 <= SIZE[1] + 5
        assert len(r['landmarks']) == 5 and all(len(p) == 2 for p in r['landmarks'])
        assert all(x1 <= px <= x2 and y1 <= py <= y2 for px, py in r['landmarks'])
        assert 0.5 < r['score'] <= 1.0 and 0.0 <= r['distance'] < 2.0 and r['probability'] is None


def test_annotated_video_has_the_input_frame_count(case, gallery_run):
    base, _, truth = case
    capture = cv2.VideoCapture(str(base / 'annotated.mp4'))
    assert capture.isOpened()
    count = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        assert frame.shape == (SIZE[1], SIZE[0], 3)
        count += 1
    capture.release()
    assert count == len(truth)
    assert 'annotated: %s (%d frames)' % (base / 'annotated.mp4', len(truth)) in gallery_run[1]


def test_bad_input_gets_a_note_and_the_run_goes_on(case, gallery_run):
    base = case[0]
    _, err, _ = gallery_run
    assert '%s: no such file or folder: skipped' % (base / 'missing.jpg') in err
    assert '%s: cannot read (' % (base / 'broken.jpg') in err
    assert '%s: not a video file (no known container signature): skipped' % (base / 'broken.mp4') in err
    assert 'camera 7: cannot open as a video camera: skipped' in err
    assert 'sources: 1 read, 3 skipped' in err


def test_classifier_file_and_every_n_frames(case, gallery_run, published_model):
    """A classifier trained on the cached gallery embeddings names the same people (the two people
    of the gallery shown plus a third), every second frame only; the annotated video has every frame."""
    base, video, truth = case
    with np.load(str(base / 'gallery' / gallery_lib.GALLERY_CACHE)) as data:
        emb, labels = data['embeddings'], data['labels']
    assert emb.shape == (3 * len(KNOWN), 128)
    pkl = str(base / 'people.pkl')
    classify.save(pkl, classify.train(emb, labels), [classify.display_name(p) for p in KNOWN])
    out = base / 'classified.jsonl'
    code, err = _recognize([published_model[1], video, '--classifier', pkl, '--every_n_frames', 2,
                            '--output_jsonl', out, '--annotate', base / 'classified'])
    assert code == 0, err
    records = _records(out)
    assert {r['frame'] for r in records} <= set(range(0, len(truth), 2))
    scores = segment_scores(records, [t if i % 2 == 0 else (t[0], []) for i, t in enumerate(truth)])
    assert all(p == 1.0 and r == 1.0 for p, r in scores.values()), scores
    assert all(0 < r['probability'] <= 1 for r in records)
    capture = cv2.VideoCapture(str(base / 'classified' / 'people.mp4'))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == len(truth)
    capture.release()


def test_the_gallery_is_read_from_its_cache(case, gallery_run, published_model):
    """The second load of the gallery neither detects nor embeds (the pipeline has no detector and no
    session): the cache written by the first run is used while nothing changed."""
    base = case[0]
    pipeline = faces_lib.FacePipeline(None, None, image_size=160, margin=32)
    notes = []
    namer = gallery_lib.load_gallery(str(base / 'gallery'), pipeline, published_model[1], 0.9, notes.append,
                                     precision=resolve_precision('auto'))   # recognize's default
    assert notes == ['gallery: 9 faces of 3 people from the cache %s' % (base / 'gallery' / gallery_lib.GALLERY_CACHE)]
    assert namer.embeddings.shape == (9, 128) and namer.names == [classify.display_name(p) for p in KNOWN]
    with pytest.raises(AttributeError):  # with another margin the cache does not fit: it would embed again
        gallery_lib.load_gallery(str(base / 'gallery'), faces_lib.FacePipeline(None, None, margin=44),
                                 published_model[1], 0.9, notes.append, precision=resolve_precision('auto'))
    other = 'fp32' if resolve_precision('auto') == 'bf16' else 'bf16'
    with pytest.raises(AttributeError):  # nor at another precision
        gallery_lib.load_gallery(str(base / 'gallery'), pipeline, published_model[1], 0.9, notes.append,
                                 precision=other)


def test_the_real_clip_runs_end_to_end(data_dir, published_model, tmp_path):
    """The street clip (1920x1080, 105 frames), frames 0, 35 and 70 recognised (detection at 640 px)
    with a gallery of five people who are not in it: faces are found and every one is unknown. (The
    whole clip, every frame, is a documented benchmark run.)"""
    clip = os.path.join(data_dir, CLIP)
    gallery = os.path.join(data_dir, 'misc_faces', 'facenet_pytorch', 'test_images_aligned')
    gallery_copy = tmp_path / 'gallery'
    for person in os.listdir(gallery):
        (gallery_copy / person).mkdir(parents=True)
        os.symlink(os.path.join(gallery, person, '1.png'), str(gallery_copy / person / '1.png'))
    out = tmp_path / 'clip.jsonl'
    code, err = _recognize([published_model[1], clip, '--gallery', gallery_copy, '--every_n_frames', 35,
                            '--max_side', 640, '--output_jsonl', out])
    assert code == 0, err
    records = _records(out)
    assert {r['frame'] for r in records} == {0, 35, 70}
    assert len(records) >= 9
    assert all(r['name'] == gallery_lib.UNKNOWN and r['distance'] > 0.9 for r in records)
    assert all(r['time'] == pytest.approx(r['frame'] / 25.0) for r in records)
    assert 'frames: 105 read, 3 recognised, 0 without faces' in err
