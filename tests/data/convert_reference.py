#!/usr/bin/env python3
"""Write the small reference files of tests/data/ from ../shared/reference (run once, by hand).

    python tests/data/convert_reference.py [path/to/shared]

Only numbers that need no photo are converted, each into a layout of this project's own (see
tests/data/README.md); nothing is copied byte for byte. The classic outputs stay the classic outputs:
the script checks that every converted array still holds them.
"""
import hashlib
import importlib.util
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SHARED = os.path.join(os.path.dirname(os.path.dirname(HERE)), '..', 'shared')


def _load_module(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def convert_triplets(reference):
    """select_triplets_<set>_45x40.npz -> classic_select_triplets_<set>_45x40.npz (one file per set).

    Embeddings are stored as float32 (upcast to float64 by the tests): the decision of every
    anchor-positive pair (does any negative have neg - pos < alpha?) has a margin above 1e-5 on these
    inputs, 700 times the rounding, so the classic selection is unchanged (checked below). Triplets
    are stored sorted by (anchor, positive) as int16 (the classic order was a random shuffle)."""
    from scipy.spatial.distance import cdist
    for name in ('random', 'clustered'):
        out = {}
        d = np.load(os.path.join(reference, 'train_eval', 'select_triplets_%s_45x40.npz' % name))
        emb32 = d['embeddings'].astype(np.float32)
        counts = d['num_per_class']
        alpha = float(d['alpha'])
        trips = d['triplets']
        order = np.lexsort((trips[:, 1], trips[:, 0]))
        trips = trips[order].astype(np.int16)
        assert int(d['np_random_seed']) == 0
        for emb in (d['embeddings'], emb32.astype(np.float64)):
            dist = cdist(emb, emb, 'sqeuclidean')
            labels = np.repeat(np.arange(len(counts)), counts)
            a, p = np.nonzero((labels[:, None] == labels[None, :]) & np.triu(np.ones_like(dist, bool), 1))
            margin = np.where(labels[a][:, None] != labels[None, :], dist[a] - dist[a, p][:, None] - alpha,
                              np.inf).min(axis=1)
            found = {(int(x), int(y)) for x, y in zip(a[margin < 0], p[margin < 0])}
            assert found == {(int(x), int(y)) for x, y in trips[:, :2]}
            assert len(a) == int(d['num_trips']) and len(found) == int(d['nrof_triplets'])
            assert np.abs(margin).min() > 1e-6
        out['embeddings'] = emb32
        out['num_per_class'] = counts.astype(np.int16)
        out['triplets'] = trips
        out['num_trips'] = np.int64(d['num_trips'])
        out['nrof_triplets'] = np.int64(d['nrof_triplets'])
        out['alpha'] = np.float64(alpha)
        np.savez_compressed(os.path.join(HERE, 'classic_select_triplets_%s_45x40.npz' % name), **out)


def _classic_distance(e1, e2, metric):
    """The classic facenet.distance (float64), written out here."""
    if metric == 0:
        return np.sum(np.square(np.subtract(e1, e2)), 1)
    dot = np.sum(np.multiply(e1, e2), axis=1)
    norm = np.linalg.norm(e1, axis=1) * np.linalg.norm(e2, axis=1)
    return np.arccos(dot / norm) / np.pi


def convert_lfw_evaluate(reference):
    """lfw_evaluate_*.npz + lfw_evaluate_results.json -> classic_lfw_evaluate.npz.

    The inputs (12,000 x 512 float64 embeddings, 49 MB) are not carried: only the 6,000 pair distances
    of each metric (without mean subtraction), from which tests rebuild 1-D / 2-D embeddings with the
    same distances, and the classic outputs of all four variants."""
    synth = _load_module(os.path.join(reference, 'synth_data.py'), 'synth_data')
    emb, issame = synth.lfw_synth_pairs(6000, 512, 4321)
    with open(os.path.join(reference, 'train_eval', 'lfw_evaluate_results.json')) as f:
        results = json.load(f)
    out = {'issame': np.asarray(issame, bool)}
    for metric in (0, 1):
        out['distance_metric%d' % metric] = _classic_distance(emb[0::2], emb[1::2], metric)
    for metric in (0, 1):
        for subtract_mean in (0, 1):
            key = 'metric%d_subtractmean%d' % (metric, subtract_mean)
            ref = np.load(os.path.join(reference, 'train_eval', 'lfw_evaluate_%s.npz' % key))
            for field in ('tpr', 'fpr', 'accuracy', 'val', 'val_std', 'far'):
                out['%s_%s' % (key, field)] = np.asarray(ref[field], np.float64)
            for field in ('auc', 'eer'):
                out['%s_%s' % (key, field)] = np.float64(results[key][field])
            np.testing.assert_array_equal(out[key + '_accuracy'], results[key]['accuracy_folds'])
    np.savez_compressed(os.path.join(HERE, 'classic_lfw_evaluate.npz'), **out)


def convert_variables(reference):
    """inception_resnet_v1_512_variables.tsv + _stats.json -> inception_resnet_v1_512_variables.json."""
    rows = []
    with open(os.path.join(reference, 'inception_resnet_v1_512_variables.tsv')) as f:
        for line in f:
            if line.startswith('#') or not line.strip():
                continue
            name, shape, trainable, in_collection, saved, dtype = line.rstrip('\n').split('\t')
            rows.append([name, [int(x) for x in shape.split('x')] if shape else [],
                         trainable == 'True', in_collection == 'True', saved == 'True', dtype])
    with open(os.path.join(reference, 'inception_resnet_v1_512_stats.json')) as f:
        stats = json.load(f)
    shapes = stats['selected_activation_shapes_batch1']
    doc = {
        'source': 'classic InceptionResnetV1, bottleneck 512 (tf.global_variables() in creation order)',
        'columns': ['name', 'shape', 'trainable', 'in_trainable_variables_collection',
                    'saved_by_classic_saver', 'dtype'],
        'variables': rows,
        'params_total': stats['params_total_all_global_variables'],
        'n_regularization_losses': stats['n_regularization_losses'],
        'activation_shapes': {k: shapes[k] for k in ('InceptionResnetV1/Conv2d_4b_3x3/Relu',
                                                      'InceptionResnetV1/Mixed_6a/concat',
                                                      'InceptionResnetV1/Mixed_7a/concat',
                                                      'InceptionResnetV1/Block8/add')},
    }
    assert len(rows) == stats['n_global_variables']
    with open(os.path.join(HERE, 'inception_resnet_v1_512_variables.json'), 'w') as f:
        f.write('{\n')
        keys = list(doc)
        for i, key in enumerate(keys):
            end = ',\n' if i < len(keys) - 1 else '\n'
            if key == 'variables':
                f.write(' "variables": [\n')
                f.write(',\n'.join('  ' + json.dumps(r) for r in rows))
                f.write('\n ]' + end)
            else:
                f.write(' %s: %s%s' % (json.dumps(key), json.dumps(doc[key]), end))
        f.write('}\n')


def check_not_copies(shared):
    with open(os.path.join(shared, '.hashes')) as f:
        known = {line.split()[0] for line in f if line.strip()}
    for name in sorted(os.listdir(HERE)):
        with open(os.path.join(HERE, name), 'rb') as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        assert digest not in known, name
        print('%-40s %8d bytes' % (name, os.path.getsize(os.path.join(HERE, name))))


if __name__ == '__main__':
    shared = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_SHARED
    reference = os.path.join(shared, 'reference')
    convert_triplets(reference)
    convert_lfw_evaluate(reference)
    convert_variables(reference)
    check_not_copies(shared)
