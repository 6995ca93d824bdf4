"""Reading and writing safetensors files with the standard library alone (8-byte little-endian
header length, a JSON header of dtype/shape/data_offsets per tensor, then the raw data), for the
fixture scripts (trim-family-refs.py, make-posembed-ref.py)."""
import json
import struct


def read(path):
    """(header, body): the JSON header as a dict and the bytes after it."""
    with open(path, 'rb') as f:
        data = f.read()
    n = struct.unpack('<Q', data[:8])[0]
    return json.loads(data[8:8 + n]), data[8 + n:]


def tensor(header, body, name):
    """(dtype, shape, raw bytes) of one tensor."""
    e = header[name]
    a, b = e['data_offsets']
    return e['dtype'], e['shape'], body[a:b]


def write(path, tensors):
    """tensors: {name: (dtype, shape, raw bytes)}, written in that order, the header padded to
    8 bytes as the safetensors library does."""
    header, blobs, off = {}, [], 0
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {'dtype': dtype, 'shape': list(shape), 'data_offsets': [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(',', ':')).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)) + h + b''.join(blobs))
