#!/usr/bin/env python3
"""Classifies images with a .vqm model and prints the top-K classes of each.

usage: classify.py MODEL.vqm IMAGE... [--top K] [--threads N]

The library decodes and preprocesses each file exactly as the model's timm eval transform
(run_image_file); a caller holding preprocessed float32 NCHW arrays uses Session.run instead.
"""

import argparse
import sys

import numpy as np

import vqm


def main():
    parser = argparse.ArgumentParser(description="Top-K classes of images with a .vqm model.")
    parser.add_argument("model", help="model file (from vit-convert or vit-quantize)")
    parser.add_argument("images", nargs="+", help="JPEG/PNG/BMP files")
    parser.add_argument("--top", type=int, default=5, help="classes to print (default 5)")
    parser.add_argument("--threads", type=int, default=0, help="threads (default: all cores)")
    args = parser.parse_args()

    try:
        model = vqm.Model(args.model)
        session = vqm.Session(model, n_threads=args.threads)
    except (vqm.Error, OSError) as e:  # OSError: libvqm.so not found
        sys.exit("classify.py: error: %s" % e)
    labels = model.labels
    failures = 0
    for path in args.images:
        try:
            logits = session.run_image_file(path)
        except vqm.Error as e:  # an unreadable image is reported, the others still run
            print("classify.py: error: %s" % e, file=sys.stderr)
            failures += 1
            continue
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        print(path)
        for k in np.argsort(-logits, kind="stable")[: args.top]:
            print("  %6.2f%%  %4d  %s" % (100 * probs[k], k, labels[k]))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
