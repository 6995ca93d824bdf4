#!/usr/bin/python3
# Makes N distinct 224x224 calibration photos from the three photos in tests/data/images
# (chelsea.png, coffee.png, rocket.jpg): seeded random crops (40-100 % of the shorter side),
# horizontal flips and scales, so a DeiT-S-sized quantization can be timed on real image
# statistics (docs/quantization.md, "Quantization time"). Needs Debian's python3-pil
# (/usr/bin/python3; a pyenv python may not have it).
# Usage: /usr/bin/python3 scripts/make-calib-photos.py OUT_DIR [N=32] [SIZE=224]
import os
import random
import sys

from PIL import Image

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "images")
out_dir = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 32
size = int(sys.argv[3]) if len(sys.argv) > 3 else 224
os.makedirs(out_dir, exist_ok=True)
sources = [Image.open(os.path.join(root, f)).convert("RGB")
           for f in ("chelsea.png", "coffee.png", "rocket.jpg")]
rng = random.Random(0)
for i in range(n):
    img = sources[i % len(sources)]
    w, h = img.size
    side = int(min(w, h) * rng.uniform(0.4, 1.0))  # crop of a random scale and place
    x0, y0 = rng.randint(0, w - side), rng.randint(0, h - side)
    crop = img.crop((x0, y0, x0 + side, y0 + side)).resize((size, size), Image.BICUBIC)
    if rng.random() < 0.5:
        crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
    crop.save(os.path.join(out_dir, "calib_%02d.png" % i))
print("wrote %d images of %dx%d to %s" % (n, size, size, out_dir))
