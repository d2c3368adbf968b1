"""Datasets as folders: one sub-folder per identity, holding its images (the classic layout)."""
import os

import numpy as np

from facenet_tf.errors import FaceNetError

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.tif', '.tiff', '.webp', '.ppm', '.pgm')


class ImageClass(object):
    """One identity: its name and the paths of its images."""

    def __init__(self, name, image_paths):
        self.name = name
        self.image_paths = image_paths

    def __str__(self):
        return self.name + ', ' + str(len(self.image_paths)) + ' images'

    def __len__(self):
        return len(self.image_paths)


def is_image_name(name):
    """Whether a file name has an image extension (IMAGE_EXTENSIONS, any case)."""
    return name.lower().endswith(IMAGE_EXTENSIONS)


def get_image_paths(facedir, skipped=None):
    """Sorted paths of the image files in one class folder (empty if it is not a folder). The one
    rule of every tool that reads a dataset folder: a file without an image extension is not read
    but appended to `skipped` (for note_skipped); hidden files and sub-folders are ignored."""
    if not os.path.isdir(facedir):
        return []
    paths = []
    for f in sorted(os.listdir(facedir)):
        path = os.path.join(facedir, f)
        if f.startswith('.') or not os.path.isfile(path):
            continue
        if is_image_name(f):
            paths.append(path)
        elif skipped is not None:
            skipped.append(path)
    return paths


def skipped_line(count):
    """The summary line of the files left out because they are not images."""
    if count == 1:
        return 'skipped: 1 file that is not an image'
    return 'skipped: %d files that are not images' % count


def note_skipped(skipped, note):
    """One note per skipped file (`note` takes a line), then the count line when any; the count."""
    for path in skipped:
        note('%s: not an image file: skipped' % path)
    if skipped:
        note(skipped_line(len(skipped)))
    return len(skipped)


def output_stems(paths):
    """{path: output name without extension} for the images of one folder: the file's stem (the
    classic name, `x.jpg` -> `x`), except where several files share a stem (`x.jpg`, `x.png`): each
    of those is named stem + '_' + its extension (`x_jpg`, `x_png`), and a number is added
    (`x_jpg_2`) if that name is taken too. Depends only on the names, not on the order of processing."""
    stems = [os.path.splitext(os.path.basename(p)) for p in paths]
    count = {}
    for stem, _ in stems:
        count[stem] = count.get(stem, 0) + 1
    names = {p: stem for p, (stem, _) in zip(paths, stems) if count[stem] == 1}
    taken = set(names.values())
    for p, (stem, ext) in sorted(zip(paths, stems)):
        if count[stem] == 1:
            continue
        base = name = '%s_%s' % (stem, ext.lstrip('.').lower() or 'noext')
        n = 1
        while name in taken:
            n += 1
            name = '%s_%d' % (base, n)
        taken.add(name)
        names[p] = name
    return names


def get_dataset(path, has_class_directories=True, skipped=None):
    """ImageClass list of one folder, or of several joined by ':' (classes sorted by name per folder);
    files that are not images are appended to `skipped` (see get_image_paths)."""
    dataset = []
    for one in path.split(':'):
        path_exp = os.path.expanduser(one)
        if not os.path.isdir(path_exp):
            raise FaceNetError('dataset folder not found: %s' % one)
        classes = sorted(c for c in os.listdir(path_exp)
                         if os.path.isdir(os.path.join(path_exp, c)) and not c.startswith('.'))
        for class_name in classes:
            dataset.append(ImageClass(class_name, get_image_paths(os.path.join(path_exp, class_name), skipped)))
    return dataset


def get_image_paths_and_labels(dataset):
    """Flat lists of paths and integer labels (the class index)."""
    image_paths_flat = []
    labels_flat = []
    for i, cls in enumerate(dataset):
        image_paths_flat += cls.image_paths
        labels_flat += [i] * len(cls.image_paths)
    return image_paths_flat, labels_flat


def split_dataset(dataset, split_ratio, min_nrof_images_per_class, mode):
    """Classic split: 'SPLIT_CLASSES' splits identities, 'SPLIT_IMAGES' splits each identity's images."""
    if mode == 'SPLIT_CLASSES':
        nrof_classes = len(dataset)
        class_indices = np.arange(nrof_classes)
        np.random.shuffle(class_indices)
        split = int(round(nrof_classes * (1 - split_ratio)))
        train_set = [dataset[i] for i in class_indices[0:split]]
        test_set = [dataset[i] for i in class_indices[split:-1]]
    elif mode == 'SPLIT_IMAGES':
        train_set = []
        test_set = []
        for cls in dataset:
            paths = list(cls.image_paths)
            np.random.shuffle(paths)
            nrof_images_in_class = len(paths)
            split = int(np.floor(nrof_images_in_class * (1 - split_ratio)))
            if split == nrof_images_in_class:
                split = nrof_images_in_class - 1
            if split >= min_nrof_images_per_class and nrof_images_in_class - split >= 1:
                train_set.append(ImageClass(cls.name, paths[:split]))
                test_set.append(ImageClass(cls.name, paths[split:]))
    else:
        raise FaceNetError('invalid train/test split mode "%s"' % mode)
    return train_set, test_set
