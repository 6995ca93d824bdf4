"""What the batch-job tests share: Fashion-MNIST t10k images as PNG files in class folders, and
an output folder's files with their bytes."""

import gzip
import os

import numpy as np

FMNIST = os.environ.get("VQM_FMNIST_DIR", "/usr/share/datasets/fashion-mnist")


def write_pngs(root, n):
    """Writes the first n t10k images as root/<label>/t10k_<index, 5 digits>.png (PIL); returns
    their paths relative to root, in index order."""
    from PIL import Image

    with gzip.open(os.path.join(FMNIST, "t10k-images-idx3-ubyte.gz")) as f:
        pixels = np.frombuffer(f.read()[16:], np.uint8).reshape(-1, 28, 28)
    with gzip.open(os.path.join(FMNIST, "t10k-labels-idx1-ubyte.gz")) as f:
        labels = np.frombuffer(f.read()[8:], np.uint8)
    names = []
    for i in range(n):
        name = "%d/t10k_%05d.png" % (labels[i], i)
        os.makedirs(os.path.join(root, str(labels[i])), exist_ok=True)
        Image.fromarray(pixels[i]).save(os.path.join(root, name))
        names.append(name)
    return names


def files_of(folder):
    """{name: bytes} of every file in `folder`."""
    out = {}
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as f:
            out[name] = f.read()
    return out
