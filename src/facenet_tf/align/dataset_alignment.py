"""Aligning a dataset folder with MTCNN: the classic outputs, robust to bad input, resumable, batched.

Layout (as the classic tool): one output folder per class, `<stem>.png` crops (`<stem>_<i>.png` for
every face with multiple faces), `bounding_boxes_<random>.txt` with one `path x1 y1 x2 y2` line per
crop (the output path alone when no face was found) and `revision_info.txt`. Images of one class
that share a stem (`x.jpg`, `x.png`) get distinct names (`x_jpg.png`, `x_png.png`; see
facenet_tf.dataset.output_stems).

Every file is written under a temporary name and renamed, so an interrupted run leaves no partial
PNG. An image counts as done only when an earlier bounding-box file lists its crop (with multiple
faces `_0`, written last) or lists it as having no face: a run killed between writing a crop and its
line redoes that image (same pixels, written again), so the bounding-box files together list every
crop once. A bounding-box file is locked while its run writes it; a later run cuts the partial last
line (a kill during a write) of files no live run holds.

A shard (facenet_tf.sharding) aligns only its classes and appends to its own
`bounding_boxes_shard_<i>_of_<n>.txt`.

Links: a symbolic link in the input folder is followed (what the user's folder links to is the
user's choice); outputs are never written through one: a class output folder that is a link is
skipped with a note, a bounding-box file that is a link stops the run, a crop replaces a link of
its name. The output folder may lie inside the input folder (it is then not taken as a class) but
may not be the input folder.

Memory is bounded by pixels, not by the number of images: a batch holds at most BATCH_SIZE images and
BATCH_PIXELS pixels (by the files' headers; a larger image is a batch alone), and batches are read
ahead only while the pixels in flight stay under IN_FLIGHT_PIXELS. Detection itself is bounded per
session call (align.detect_face).

This module is the run (align_dataset: plan, align, append the lines); the planning and resume
logic is facenet_tf.align.alignment_plan, the batched detect-crop-write pipeline
facenet_tf.align.batch_alignment.
"""
import os
import sys

from facenet_tf.align.alignment_plan import check_output_dir, open_boxes, plan
from facenet_tf.align.batch_alignment import results_of
from facenet_tf.progress import Progress
from facenet_tf.run_info import store_revision_info


def align_dataset(input_dir, output_dir, opts, random_order=False, num_workers=1, arg_string='',
                  log=None, shard=None):
    """Align every image of `input_dir` (the classes of `shard` only, when given) into
    `output_dir`; returns the counts of the run (a dict). A shard locks its bounding-box file
    before it looks at the output folder. Notes (images skipped, unreadable or without a face) go to
    `log`, by default to stderr above the progress bar."""
    default_log = log is None
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    output_dir = os.path.expanduser(output_dir)
    check_output_dir(input_dir, output_dir)
    created = not os.path.lexists(output_dir)
    os.makedirs(output_dir, exist_ok=True)
    bb_path, bb_file = open_boxes(output_dir, shard) if shard is not None else (None, None)
    try:
        store_revision_info(None, output_dir, arg_string)
        jobs, done, skipped, input_images = plan(input_dir, output_dir, opts.detect_multiple_faces, random_order,
                                                 shard, log)
        counts = {'total': len(jobs) + done + skipped, 'already_done': done, 'aligned': 0, 'faces': 0,
                  'no_face': 0, 'unreadable': skipped, 'input_images': input_images, 'created_output': created,
                  'bounding_boxes': bb_path}
        if done:
            log('%d of %d images already aligned by an earlier run: skipped' % (done, counts['total']))
        if not jobs:
            return counts
        progress = Progress(len(jobs), 'align', 'img')
        note = progress.write if default_log else log
        for results in results_of(jobs, opts, num_workers):
            if bb_file is None:  # opened once the detector has loaded and a batch is done
                bb_path, bb_file = open_boxes(output_dir, None)
            text = []
            for result in results:
                if result.message:
                    note(result.message)
                text += [line + '\n' for line in result.lines]
                if result.status == 'aligned':
                    counts['aligned'] += 1
                    counts['faces'] += len(result.lines)
                elif result.status == 'noface':
                    counts['no_face'] += 1
                else:
                    counts['unreadable'] += 1
            bb_file.write(''.join(text))  # a batch's lines in one write: a kill leaves whole lines
            bb_file.flush()
            progress.update(len(results))
    finally:
        if bb_file is not None:
            bb_file.close()
    sys.stderr.write(progress.summary() + '\n')
    counts['bounding_boxes'] = bb_path
    return counts


def remove_output_left_empty(output_dir, counts):
    """After a run that aligned nothing: remove the output folder when this run created it and it
    holds only what this run wrote (revision_info.txt, its bounding-box file, empty class folders);
    True when removed. Anything else in it (another run's crops) keeps the folder as it is."""
    output_dir = os.path.expanduser(output_dir)
    if not counts.get('created_output') or not os.path.isdir(output_dir) or os.path.islink(output_dir):
        return False
    names = set(os.listdir(output_dir))
    ours = {'revision_info.txt'}
    if counts.get('bounding_boxes'):
        ours.add(os.path.basename(counts['bounding_boxes']))
    folders = [n for n in names - ours if os.path.isdir(os.path.join(output_dir, n))
               and not os.path.islink(os.path.join(output_dir, n))]
    if names - ours - set(folders) or any(os.listdir(os.path.join(output_dir, n)) for n in folders):
        return False
    try:   # a run started meanwhile in the same folder makes a removal fail: the folder stays
        for name in folders:
            os.rmdir(os.path.join(output_dir, name))
        for name in names & ours:
            os.remove(os.path.join(output_dir, name))
        os.rmdir(output_dir)
    except OSError:
        return False
    return True


def summary_line(counts):
    return ('Total number of images: %d, successfully aligned: %d (%d faces written), no face: %d, '
            'unreadable: %d, already done: %d' % (
                counts['total'], counts['aligned'], counts['faces'], counts['no_face'],
                counts['unreadable'], counts['already_done']))


def nothing_aligned(counts):
    """Why a run produced nothing (no image found, none readable, no face in any), or None when it
    aligned a face, found every image done by earlier runs, or is a shard whose classes are empty
    while other shards have images."""
    if counts['aligned'] or counts['already_done'] or (counts['total'] == 0 and counts.get('input_images')):
        return None
    if counts['total'] == 0:
        return 'No images found'
    if counts['unreadable'] == counts['total']:
        return 'No readable image among %d' % counts['total']
    return 'No face found in any of %d images' % counts['total']
