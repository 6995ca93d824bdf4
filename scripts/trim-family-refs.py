#!/usr/bin/env python3
"""Copies the ViT-family fixtures the tests use from ../shared/models/family into
tests/data/models/family, with each reference cut down to what the tests read: the two noise
rows of pixel_values (rows 2-3, as "noise_pixel_values") and the outputs of all four rows
("output"; rows 0-1 are the photos, which the tests preprocess themselves from tests/data/images).
Pure Python (no numpy/torch): safetensors rows are contiguous bytes.

NAME is a checkpoint (NAME.safetensors with NAME.ref.safetensors beside it: timm, torchvision)
or a Hugging Face snapshot folder (NAME/ holding model.safetensors, config.json,
preprocessor_config.json and reference.safetensors): the folder is copied into
tests/data/models/family/NAME/ with its reference trimmed in place under the same name.

Usage: python3 scripts/trim-family-refs.py [SHARED_FAMILY_DIR] NAME...
"""
import os
import shutil
import sys

from safetensors_io import read, tensor, write


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    args = sys.argv[1:]
    src = os.path.join(here, '..', '..', 'shared', 'models', 'family')
    if args and os.path.isdir(args[0]):
        src, args = args[0], args[1:]
    dst = os.path.join(here, '..', 'tests', 'data', 'models', 'family')
    os.makedirs(dst, exist_ok=True)
    for name in args:
        if os.path.isdir(os.path.join(src, name)):  # a Hugging Face snapshot folder
            os.makedirs(os.path.join(dst, name), exist_ok=True)
            for f in ('model.safetensors', 'config.json', 'preprocessor_config.json'):
                shutil.copyfile(os.path.join(src, name, f), os.path.join(dst, name, f))
            ref_in = os.path.join(src, name, 'reference.safetensors')
            ref_out = os.path.join(dst, name, 'reference.safetensors')
        else:
            shutil.copyfile(os.path.join(src, name + '.safetensors'),
                            os.path.join(dst, name + '.safetensors'))
            ref_in = os.path.join(src, name + '.ref.safetensors')
            ref_out = os.path.join(dst, name + '.ref.safetensors')
        header, body = read(ref_in)
        dtype, shape, raw = tensor(header, body, 'pixel_values')
        row = len(raw) // shape[0]
        out = {'noise_pixel_values': (dtype, [2] + shape[1:], raw[2 * row:4 * row]),
               'output': tensor(header, body, 'output')}
        write(ref_out, out)
        print(name, 'ok')


if __name__ == '__main__':
    main()
