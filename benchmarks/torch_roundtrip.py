"""Proof of the facenet-pytorch name and layout mapping of facenet_tf.torch_import: facenet-pytorch's
own InceptionResnetV1 (random weights, seeded; every BatchNorm's scale, shift and statistics
randomised too, so the gamma folding is exercised) is saved with torch.save in both of its layouts
(zip archive and the older stream), each file is imported with `facenet_tf.torch_import`, and the
embeddings of the classic folder (TensorFlow) are compared with facenet-pytorch's own (PyTorch, eval
mode) on the same standardised input, (x - 127.5) / 128, of real faces: the distinct reference crops
and central 160x160 crops of LFW photos (two of each of the first 12 people with two or more).

PyTorch is not a project dependency: it runs in a separate environment, on this same script.

    python -m venv /tmp/torchenv
    /tmp/torchenv/bin/pip install torch requests tqdm
    /tmp/torchenv/bin/pip install facenet-pytorch==2.6.0 --no-deps
    python benchmarks/torch_roundtrip.py --torch_python /tmp/torchenv/bin/python

Measured on the 2-core AMD EPYC (AVX-512; TensorFlow 2.21, torch 2.13.0+cpu, facenet-pytorch 2.6.0), 39 s:
    facenet-pytorch: 31 faces, closest two embeddings 1.5e-04 apart
    zip:                       512-D, max |embedding difference| 7.5e-08 (worst cosine 1.000000)
    stream:                    512-D, max |embedding difference| 7.5e-08 (worst cosine 1.000000)
    zip, gamma not folded:     512-D, max |embedding difference| 4.4e-02 (worst cosine 0.969802)
Random weights map all faces close together (hence the 1.5e-04), still 2,000 times the difference
between the two frameworks. The last line is a control: importing without folding the BatchNorm
scales into the variances is visibly wrong, so the first two lines check the folding as well as the
names and layouts.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import types

import numpy as np

SEED = 0
LFW_FOLDERS = 12   # the first folders (sorted) that hold at least two photos, two photos each


def torch_side(folder):
    """(In the PyTorch environment.) Save facenet-pytorch's network with random weights in both
    layouts and its embeddings of folder/input.npy."""
    import importlib.util
    import torch
    root = os.path.dirname(importlib.util.find_spec('facenet_pytorch').origin)   # not imported: its
    # __init__ needs torchvision; an empty package of the same folder gives the network module alone
    package = types.ModuleType('facenet_pytorch')
    package.__path__ = [root]
    sys.modules['facenet_pytorch'] = package
    from facenet_pytorch.models.inception_resnet_v1 import InceptionResnetV1
    torch.manual_seed(SEED)
    net = InceptionResnetV1(classify=False)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.1)
                module.running_mean.normal_(0.0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    net.eval()
    torch.save(net.state_dict(), os.path.join(folder, 'random_zip.pt'))
    torch.save(net.state_dict(), os.path.join(folder, 'random_stream.pt'), _use_new_zipfile_serialization=False)
    x = torch.from_numpy(np.load(os.path.join(folder, 'input.npy')).transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
        np.save(os.path.join(folder, 'torch_embeddings.npy'), net(x).numpy())
    print('torch %s: saved %d tensors' % (torch.__version__, len(net.state_dict())))


def faces(shared):
    """(N, 160, 160, 3) float32 standardised faces: the distinct reference crops and central LFW crops."""
    from PIL import Image
    crops = os.path.join(shared, 'reference', 'embeddings', 'crops')
    paths = sorted(os.path.join(d, f) for d, _, files in os.walk(crops) for f in files if f.endswith('.png'))
    arrays = [np.asarray(Image.open(p).convert('RGB')) for p in paths]
    lfw = os.path.join(shared, 'data', 'lfw_deepfunneled')
    people = [p for p in sorted(os.listdir(lfw)) if len(os.listdir(os.path.join(lfw, p))) >= 2][:LFW_FOLDERS]
    for person in people:
        for name in sorted(os.listdir(os.path.join(lfw, person)))[:2]:
            image = np.asarray(Image.open(os.path.join(lfw, person, name)).convert('RGB'))
            top, left = (image.shape[0] - 160) // 2, (image.shape[1] - 160) // 2
            arrays.append(image[top:top + 160, left:left + 160])
    unique = np.unique(np.stack(arrays), axis=0)   # two of the reference crops are the same image
    return ((unique.astype(np.float32) - 127.5) / 128.0).astype(np.float32)


def main(args):
    import _paths
    from facenet_tf import embedding, torch_import, tf_setup
    from facenet_tf.models import inception_resnet_v1
    tf = tf_setup.configure()
    tf1 = tf.compat.v1
    with tempfile.TemporaryDirectory() as folder:
        x = faces(args.shared or _paths.SHARED)
        np.save(os.path.join(folder, 'input.npy'), x)
        subprocess.run([args.torch_python, os.path.abspath(__file__), '--torch_side', folder], check=True)
        expected = np.load(os.path.join(folder, 'torch_embeddings.npy'))
        apart = np.linalg.norm(expected[:, None] - expected[None], axis=2)[np.triu_indices(len(x), 1)]
        print('facenet-pytorch: %d faces, closest two embeddings %.1e apart' % (len(x), apart.min()))
        fold = torch_import.fold_gamma
        for layout, folding in (('zip', fold), ('stream', fold), ('zip', lambda variance, gamma: variance)):
            torch_import.fold_gamma = folding   # the last run: a control without the gamma folding
            model = tempfile.mkdtemp(dir=folder)
            torch_import.import_model(os.path.join(folder, 'random_%s.pt' % layout), model, inception_resnet_v1,
                                      'random', log=lambda line: None, overwrite=True)
            with tf1.Graph().as_default(), tf1.Session() as sess:
                embedding.load_for_inference(model, sess)
                images, phase_train, emb = embedding.model_tensors(sess.graph)
                got = sess.run(emb, {images: x, phase_train: False})
            print('%-26s %d-D, max |embedding difference| %.1e (worst cosine %.6f)'
                  % (layout + (':' if folding is fold else ', gamma not folded:'), got.shape[1],
                     np.abs(got - expected).max(), np.min(np.sum(got * expected, axis=1))))
        torch_import.fold_gamma = fold
    return 0


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--torch_python', default='/tmp/torchenv/bin/python',
                        help='Python of an environment with torch and facenet-pytorch.')
    parser.add_argument('--shared', default='', help='The shared folder (reference crops, LFW photos).')
    parser.add_argument('--torch_side', default='', help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.torch_side:
        sys.exit(torch_side(arguments.torch_side))
    sys.exit(main(arguments))
