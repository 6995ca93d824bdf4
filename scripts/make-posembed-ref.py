#!/usr/bin/python3
"""Makes tests/data/reference/posembed_resampled.safetensors: the position embeddings of three
ViT-family fixtures (tests/data/models/family) resampled to another input size by timm's
resample_abs_pos_embed (timm/layers/pos_embed.py; reproduced below, since timm is not packaged for
Debian), i.e. torch's F.interpolate(mode='bicubic', antialias=True). The tests
(tests/golden/image_size_golden_test.cpp) compare vit-convert --image-size against it.

Each tensor is named "<fixture>@<image size>" and holds the whole resampled pos_embed, f32
[1, rows, embed_dim], prefix rows included. Cases: DINOv2 (37x37 grid with a class-token row)
down to 224 (16x16); DeiT III (14x14, no prefix rows) up to 256 (16x16); ViT-B/32 at 384 (12x12
with a class-token row) to 224 (7x7), a ratio with no common factor.

timm casts the result back to the checkpoint's dtype (F16 for these fixtures); vqm keeps f32, so
the reference stays f32 too (an f16 rounding would hide the resampler's own agreement).

Rerun (Debian's torch: apt-get install python3-torch; /usr/bin/python3, not a pyenv one):
    /usr/bin/python3 scripts/make-posembed-ref.py
"""
import math
import os

import torch
import torch.nn.functional as F

from safetensors_io import read, tensor, write

HERE = os.path.dirname(os.path.abspath(__file__))
FAMILY = os.path.join(HERE, '..', 'tests', 'data', 'models', 'family')
OUT = os.path.join(HERE, '..', 'tests', 'data', 'reference', 'posembed_resampled.safetensors')

# fixture, prefix rows in pos_embed, patch size, new image size
CASES = [
    ('dinov2_small_features', 1, 14, 224),
    ('deit3_small_layerscale', 0, 16, 256),
    ('vit_patch32_384', 1, 32, 224),
]

DTYPES = {'F16': torch.float16, 'BF16': torch.bfloat16, 'F32': torch.float32}


def read_tensor(path, name):
    """One tensor of a safetensors file, as a torch tensor."""
    dtype, shape, raw = tensor(*read(path), name)
    return torch.frombuffer(bytearray(raw), dtype=DTYPES[dtype]).reshape(shape)


def resample_abs_pos_embed(posemb, new_size, old_size=None, num_prefix_tokens=1,
                           interpolation='bicubic', antialias=True):
    """timm's, without the final cast back to the input dtype (see the module comment)."""
    num_pos_tokens = posemb.shape[1]
    num_new_tokens = new_size[0] * new_size[1] + num_prefix_tokens
    if num_new_tokens == num_pos_tokens and new_size[0] == new_size[1]:
        return posemb.float()
    if old_size is None:
        hw = int(math.sqrt(num_pos_tokens - num_prefix_tokens))
        old_size = hw, hw
    if num_prefix_tokens:
        posemb_prefix, posemb = posemb[:, :num_prefix_tokens], posemb[:, num_prefix_tokens:]
    else:
        posemb_prefix = None
    embed_dim = posemb.shape[-1]
    posemb = posemb.float()  # interpolate needs float32
    posemb = posemb.reshape(1, old_size[0], old_size[1], -1).permute(0, 3, 1, 2)
    posemb = F.interpolate(posemb, size=new_size, mode=interpolation, antialias=antialias)
    posemb = posemb.permute(0, 2, 3, 1).reshape(1, -1, embed_dim)
    if posemb_prefix is not None:
        posemb = torch.cat([posemb_prefix.float(), posemb], dim=1)
    return posemb


def main():
    out = {}
    for name, prefix, patch, size in CASES:
        pos = read_tensor(os.path.join(FAMILY, name + '.safetensors'), 'pos_embed')
        grid = size // patch
        res = resample_abs_pos_embed(pos, (grid, grid), num_prefix_tokens=prefix)
        old = int(math.isqrt(pos.shape[1] - prefix))
        print(f'{name}: {old}x{old} -> {grid}x{grid}, pos_embed {list(res.shape)}')
        out[f'{name}@{size}'] = res
    write(OUT, {name: ('F32', t.shape, t.contiguous().numpy().astype('<f4').tobytes())
                for name, t in out.items()})
    print('wrote', os.path.normpath(OUT), os.path.getsize(OUT), 'bytes')


if __name__ == '__main__':
    main()
