"""Small fake copies of the official dataset layouts (a few classes, tiny images)."""

import os

from PIL import Image

# MIT67: two train and one test image in each of three official classes.
MIT67_CLASSES = ('bar', 'kitchen', 'winecellar')  # official labels 4, 37, 66
MIT67_TRAIN = [f'{c}/{c}_{i}.jpg' for c in MIT67_CLASSES for i in range(2)]
MIT67_TEST = [f'{c}/{c}_test.jpg' for c in MIT67_CLASSES]

# SUN397: three classes, one of them with a sub-category folder.
SUN397_CLASS_KEYS = ('/a/abbey', '/a/apartment_building/outdoor', '/b/bakery/shop')
SUN397_CLASS_NAMES = ('abbey', 'apartment_building/outdoor', 'bakery/shop')

# Places205: three classes, labels as in a csv.
PLACES205_CLASSES = ('a/abbey', 'a/apartment_building/outdoor', 'b/bakery/shop')


def write_image(path, size=16, color=(200, 30, 30)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new('RGB', (size, size), color).save(path, format='JPEG')


def write_lines(path, lines, newline='\n'):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w', newline='') as f:
        f.write(newline.join(lines) + newline)


def make_mit67(root):
    for rel in MIT67_TRAIN + MIT67_TEST:
        write_image(os.path.join(root, 'Images', rel))
    write_lines(os.path.join(root, 'TrainImages.txt'), MIT67_TRAIN, newline='\r\n')
    write_lines(os.path.join(root, 'TestImages.txt'), MIT67_TEST)
    return str(root)


def sun397_split(partition, split):
    """The image lines of a fake partition: 2 train / 1 test image per class."""
    count = 2 if split == 'train' else 1
    tag = 'tr' if split == 'train' else 'te'
    return [
        f'{key}/sun_p{partition}{tag}{i}.jpg' for key in SUN397_CLASS_KEYS for i in range(count)
    ]


def make_sun397(root, partitions=(1, 2)):
    part_dir = os.path.join(root, 'Partitions')
    write_lines(os.path.join(part_dir, 'ClassName.txt'), SUN397_CLASS_KEYS)
    for p in partitions:
        for split, prefix in (('train', 'Training'), ('test', 'Testing')):
            lines = sun397_split(p, split)
            write_lines(os.path.join(part_dir, f'{prefix}_{p:02d}.txt'), lines)
            for line in lines:
                write_image(os.path.join(root, 'SUN397', line[1:]))
    return str(root)


def places205_split(split):
    count = 3 if split == 'train' else 1
    return [
        f'{folder}/{split}{i:05d}.jpg {label}'
        for label, folder in enumerate(PLACES205_CLASSES)
        for i in range(count)
    ]


def make_places205(root):
    for split in ('train', 'val'):
        lines = places205_split(split)
        write_lines(os.path.join(root, 'trainvalsplit_places205', f'{split}_places205.csv'), lines)
        for line in lines:
            write_image(os.path.join(root, 'images256', line.split()[0]))
    return str(root)
