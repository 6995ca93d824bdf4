"""Batch jobs in Python: the output folder of `vit-run --out` (parts + index.json), read and
written byte for byte as the command line writes it, so either side resumes the other.

The format is specified in docs/batch-jobs.md; the C++ twin is apps/batch_job.cpp. In short:
OUT/index.json says which job the folder holds (model checksum, listing checksum, part size,
top-K); part k covers listing entries [k * part_size, (k + 1) * part_size) and is
OUT/part-<k, 6 digits>.npy (float32 rows of the images that decoded: logits or embeddings) plus
OUT/part-<k>.json (their names, top-K classes, the images that failed and why), the .json renamed
into place last. Shard I/N of a job is the parts k with k % N == I.

    import vqm.jobs
    res = vqm.jobs.read("tags/")        # every part must be complete
    res.names, res.outputs, res.errors  # listing order; outputs float32 (n, n_outputs)
"""

import concurrent.futures
import json
import os
import zlib

import numpy as np

from . import Error, Model, Session

FORMAT, VERSION = "vqm-batch-job", 1
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


class JobError(Exception):
    """A job that cannot run or be read: another job's folder, missing parts, a bad listing."""


class Listing:
    """The images of a job: `names` as the parts record them, read from path(i)."""

    def __init__(self, root, names):
        self.root = os.fspath(root)
        self.names = list(names)

    def path(self, i):
        return os.path.join(self.root, self.names[i]) if self.root else self.names[i]


def list_folder(folder):
    """Every .jpg/.jpeg/.png/.bmp under `folder` (recursive, following links to folders, names
    starting with "." skipped with their folders), sorted by path bytes: vit-run's listing."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise JobError("'%s' is not a folder" % folder)
    names = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel = os.path.relpath(dirpath, folder)
        for f in filenames:
            if f.startswith(".") or os.path.splitext(f)[1].lower() not in IMAGE_EXTENSIONS:
                continue
            if os.path.isfile(os.path.join(dirpath, f)):
                names.append(f if rel == "." else rel + "/" + f)
    if not names:
        raise JobError("folder '%s' holds no .jpg, .jpeg, .png or .bmp images" % folder)
    names.sort(key=os.fsencode)
    return Listing(folder, names)


def read_manifest(path):
    """One image path per line (relative ones relative to the manifest's folder), blank lines
    skipped, a trailing CR dropped: vit-run --manifest's listing."""
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    names = [os.fsdecode(line[:-1] if line.endswith(b"\r") else line) for line in lines]
    names = [n for n in names if n]
    if not names:
        raise JobError("manifest '%s' lists no images" % os.fspath(path))
    return Listing(os.path.dirname(os.fspath(path)), names)


def listing_of(images, root=""):
    """A Listing from a folder, a manifest file, or a sequence of paths (relative ones relative
    to `root`)."""
    if isinstance(images, Listing):
        return images
    if isinstance(images, (str, bytes, os.PathLike)):
        images = os.fsdecode(images)
        return list_folder(images) if os.path.isdir(images) else read_manifest(images)
    names = [os.fsdecode(p) for p in images]
    if not names:
        raise JobError("no images given")
    return Listing(root, names)


def parse_shard(text):
    """"I/N" -> (I, N) with 0 <= I < N."""
    i, sep, n = str(text).partition("/")
    if sep and i.isdigit() and n.isdigit() and len(i) <= 9 and len(n) <= 9 and int(i) < int(n):
        return int(i), int(n)
    raise JobError("--shard '%s': expected I/N with 0 <= I < N (e.g. 0/4 ... 3/4)" % text)


def _utf8(text):
    # Linux file names are bytes; invalid UTF-8 is recorded as U+FFFD, as vit-run records it.
    return os.fsencode(text).decode("utf-8", "replace")


def dump_line(obj):
    """JSON exactly as nlohmann's dump() writes it: sorted keys, no spaces, UTF-8."""
    return (json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


def _crc32_file(path):
    crc, size = 0, 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            crc, size = zlib.crc32(chunk, crc), size + len(chunk)
    return crc, size


def job_index(model_path, model, listing, part_size=1024, top=5):
    """The index.json of a job, as a dict (see apps/batch_job.h: job_index)."""
    crc, size = _crc32_file(model_path)
    listing_crc = 0
    for name in listing.names:
        listing_crc = zlib.crc32(os.fsencode(name) + b"\n", listing_crc)
    images, classes = len(listing.names), model.n_classes
    index = {
        "format": FORMAT,
        "version": VERSION,
        "model": {"file": os.path.basename(os.fspath(model_path)), "bytes": size,
                  "crc32": "0x%08x" % crc},
        "kind": "logits" if classes > 0 else "embedding",
        "n_outputs": model.n_outputs,
        "top": min(top, classes) if classes > 0 else 0,
        "images": images,
        "listing_crc32": "0x%08x" % listing_crc,
        "part_size": part_size,
        "parts": (images + part_size - 1) // part_size,
    }
    if classes > 0:
        index["labels"] = model.labels
    return index


def write_atomic(path, data):
    """Writes `data` to a temporary file beside `path`, fsyncs it and renames it over `path`
    (vqm::write_file_atomic's protocol and temporary names)."""
    folder, base = os.path.split(os.fspath(path))
    tmp = os.path.join(folder, ".%s.tmp.%d.%s" % (base, os.getpid(), os.urandom(8).hex()))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:
        dfd = os.open(folder or ".", os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:  # some file systems refuse fsync on folders; the data is complete already
        pass


def _identity(index):
    index = dict(index)
    if isinstance(index.get("model"), dict):
        index["model"] = {k: v for k, v in index["model"].items() if k != "file"}
    return index


def _short(value):
    s = "absent" if value is None else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return s if len(s) <= 60 else s[:57] + "..."


def open_job(out, index):
    """Creates folder `out` and writes index.json, or checks that the one there is this job's."""
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "index.json")
    if not os.path.exists(path):
        write_atomic(path, dump_line(index))
        return
    with open(path, "rb") as f:
        have = _identity(json.loads(f.read()))
    want = _identity(index)
    for key in sorted(set(have) | set(want)):
        if have.get(key) != want.get(key):
            raise JobError(
                "%s belongs to another job (%s %s there, %s here): use another output folder, or "
                "the same model, images, part size and top-K"
                % (path, key, _short(have.get(key)), _short(want.get(key))))


def read_index(out):
    with open(os.path.join(out, "index.json"), "rb") as f:
        index = json.loads(f.read())
    if index.get("format") != FORMAT or index.get("version") != VERSION:
        raise JobError("%s/index.json is not a %s v%d index" % (out, FORMAT, VERSION))
    return index


def part_stem(k):
    return "part-%06d" % k


def part_complete(out, k):
    """A part is complete when its .json exists (renamed into place after its .npy)."""
    return os.path.isfile(os.path.join(out, part_stem(k) + ".json"))


def npy_header(rows, cols):
    """numpy format 1.0 header of a (rows, cols) '<f4' array, padded to 64 bytes like numpy."""
    d = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (rows, cols)
    d += " " * (63 - (10 + len(d)) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + len(d).to_bytes(2, "little") + d.encode()


def _decode_window(model, listing, indices, pool):
    """Preprocessed images (or the vqm.Error) of `indices`, decoded on `pool`, in order."""

    def one(i):
        try:
            return model.preprocess_image_file(listing.path(i))
        except Error as e:
            return e

    return list(pool.map(one, indices)) if pool else [one(i) for i in indices]


def encode_part(model, session, images, k, first, top, batch, pool=None):
    """Runs part k, whose images (a Listing holding exactly the part's images) start at listing
    entry `first`; returns the bytes of its .npy and .json. The images that decode are run in
    batches of `batch` in listing order, as vit-run batches them, so the bits match. `pool`: an
    optional executor that decodes in parallel (the order of the results is kept)."""
    count = len(images.names)
    names, errors, rows, pending = [], [], [], []
    window = max(batch * 4, 1)  # decoded images held at once

    def flush():
        if pending:
            rows.append(session.run(np.stack(pending)))
            pending.clear()

    for start in range(0, count, window):
        indices = range(start, min(start + window, count))
        for i, image in zip(indices, _decode_window(model, images, indices, pool)):
            if isinstance(image, Error):
                errors.append({"error": image.message, "image": _utf8(images.names[i])})
                continue
            names.append(_utf8(images.names[i]))
            pending.append(image)
            if len(pending) == batch:
                flush()
    flush()
    out = np.concatenate(rows) if rows else np.empty((0, model.n_outputs), np.float32)
    meta = {"count": count, "errors": errors, "first": first, "images": names, "part": k}
    if top > 0:
        meta["top"] = [np.argsort(-row, kind="stable")[:top].tolist() for row in out]
    npy = npy_header(out.shape[0], model.n_outputs) + out.astype("<f4", copy=False).tobytes()
    return npy, dump_line(meta)


def part_images(listing, index, k):
    """The Listing of part k's images (index: the job's index.json dict)."""
    first = k * index["part_size"]
    if not 0 <= first < index["images"]:
        raise JobError("part %d is not in the job (%d parts)" % (k, index["parts"]))
    return Listing(listing.root, listing.names[first:first + index["part_size"]]), first


def write_part(out, k, npy, meta):
    """Writes part k's files, the .json last (its presence marks the part complete)."""
    stem = os.path.join(out, part_stem(k))
    write_atomic(stem + ".npy", npy)
    write_atomic(stem + ".json", meta)


def run(model_path, images, out, shard="0/1", part_size=1024, top=5, batch=8, n_threads=0,
        root=""):
    """Runs shard I/N of a job in this process (what `vit-run --out` does): the parts not yet
    complete, each written atomically. Returns {"written": [k...], "skipped": [k...], "errors": n}."""
    listing = listing_of(images, root)
    index_shard, count = parse_shard(shard)
    done = {"written": [], "skipped": [], "errors": 0}
    with Model(model_path) as model:
        index = job_index(model_path, model, listing, part_size, top)
        open_job(out, index)
        with Session(model, n_threads=n_threads, max_batch=batch) as session:
            for k in range(index_shard, index["parts"], count):
                if part_complete(out, k):
                    done["skipped"].append(k)
                    continue
                images_k, first = part_images(listing, index, k)
                npy, meta = encode_part(model, session, images_k, k, first, index["top"], batch)
                write_part(out, k, npy, meta)
                done["written"].append(k)
                done["errors"] += len(json.loads(meta)["errors"])
    return done


class Results:
    """A whole job read back: names (listing order, the images that decoded), outputs
    (float32 (len(names), n_outputs)), top (top-K class indices per row, classifiers), errors
    ([{"image", "error"}]), index (the index.json dict), labels."""

    def __init__(self, index, names, outputs, top, errors):
        self.index, self.names, self.outputs, self.top, self.errors = (
            index, names, outputs, top, errors)
        self.labels = index.get("labels", [])

    def probabilities(self):
        """Softmax of the logits (classifiers), float64."""
        z = self.outputs.astype(np.float64)
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)


def missing_parts(out):
    """Parts of the job in `out` that are not complete yet."""
    index = read_index(out)
    return [k for k in range(index["parts"]) if not part_complete(out, k)]


def read(out):
    """Reads every part of the job in `out` (JobError naming the missing parts if any is not
    complete) and checks that each covers its range of the listing exactly once."""
    index = read_index(out)
    missing = missing_parts(out)
    if missing:
        raise JobError("%s: %d of %d parts are not complete (first: %s)"
                       % (out, len(missing), index["parts"], part_stem(missing[0])))
    names, outputs, top, errors = [], [], [], []
    for k in range(index["parts"]):
        stem = os.path.join(out, part_stem(k))
        with open(stem + ".json", "rb") as f:
            meta = json.loads(f.read())
        rows = np.load(stem + ".npy")
        first = k * index["part_size"]
        want = min(index["part_size"], index["images"] - first)
        if (meta["part"], meta["first"], meta["count"]) != (k, first, want) or \
                len(meta["images"]) + len(meta["errors"]) != want or \
                rows.shape != (len(meta["images"]), index["n_outputs"]):
            raise JobError("%s does not cover images %d..%d exactly once" % (stem, first,
                                                                               first + want - 1))
        names += meta["images"]
        errors += meta["errors"]
        top += meta.get("top", [])
        outputs.append(rows)
    return Results(index, names, np.concatenate(outputs), top, errors)
