"""vqm from Python: ViT/DeiT inference on CPU, fp32 or quantized .vqm models, numpy in and out.

    import numpy as np, vqm
    model = vqm.Model("deit_small.vqm")
    session = vqm.Session(model, n_threads=4, max_batch=8)
    logits = session.run(images)                # float32 (N, C, H, W), preprocessed -> (N, K)
    logits = session.run_image_file("cat.jpg")  # decoded + preprocessed as the model says
    print(model.labels[int(np.argmax(logits))])

A thin binding over the C API of libvqm.so (ctypes): it compiles nothing, so one copy works with
every Python 3 and depends on the library's stable C ABI, not on CPython's. Failures raise
vqm.Error carrying the library's status and its message (vqm_last_error()). How libvqm.so is
found: see vqm._lib (VQM_LIBRARY, the installed copy, or vqm.load_library(path)).

Threads: a Model may be shared; use each Session from one thread at a time. Calls into the
library release the GIL, so sessions in several threads run in parallel.
"""

import ctypes
import enum
import os

import numpy as np

from ._lib import lib as _api
from ._lib import load_library

__all__ = ["Error", "Model", "Session", "Status", "load_library", "version"]


class Status(enum.IntEnum):
    """vqm_status of vqm.h."""

    OK = 0
    INVALID_ARGUMENT = 1
    IO = 2
    FORMAT = 3
    UNSUPPORTED = 4
    OUT_OF_MEMORY = 5
    LIMIT = 6
    BUFFER_TOO_SMALL = 7
    INTERNAL = 8


class Error(Exception):
    """A failed vqm call: `status` (a Status) and `message` (the library's vqm_last_error())."""

    def __init__(self, status, message):
        try:
            status = Status(status)
        except ValueError:  # a newer library's status: keep the number
            pass
        self.status = status
        self.message = message
        super().__init__(message)


def _check(status):
    if status != Status.OK:
        raise Error(status, _api().vqm_last_error().decode("utf-8", "replace"))


def version():
    """Version of the loaded libvqm, e.g. "0.1.0"."""
    return _api().vqm_version().decode()


class _Owned:
    """A library object owned by Python: freed by close(), at the end of a `with` block, or when
    garbage-collected."""

    _handle = None
    _free = ""  # name of the vqm_*_free function
    _kind = ""

    def _h(self):
        if self._handle is None:
            raise ValueError("vqm: the %s is closed" % self._kind)
        return self._handle

    def close(self):
        """Releases the object now. Idempotent."""
        if self._handle is not None:
            getattr(_api(), self._free)(self._handle)
            self._handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: the module may already be torn down
            pass


class Model(_Owned):
    """A loaded .vqm model (fp32 or quantized), immutable and shareable between threads. Sessions
    made from it keep working after it is closed."""

    _free, _kind = "vqm_model_free", "model"

    def __init__(self, path):
        """Loads and fully validates the .vqm file at `path` (str or os.PathLike)."""
        handle = ctypes.c_void_p()
        _check(_api().vqm_model_load(os.fsencode(path), None, ctypes.byref(handle)))
        self._handle = handle

    @classmethod
    def from_bytes(cls, data):
        """Loads a model from the bytes of a .vqm file (bytes, bytearray or memoryview); the
        library copies them."""
        buf = memoryview(data).cast("B")
        src = (ctypes.c_char * len(buf)).from_buffer_copy(buf) if len(buf) else None
        handle = ctypes.c_void_p()
        _check(_api().vqm_model_load_from_memory(src, len(buf), None, ctypes.byref(handle)))
        model = cls.__new__(cls)
        model._handle = handle
        return model

    @property
    def n_classes(self):
        """Classes of the classifier head; 0 for an embedding model (no head)."""
        return _api().vqm_model_n_classes(self._h())

    @property
    def n_outputs(self):
        """Values a run returns per image: n_classes logits, or the embedding's size."""
        return _api().vqm_model_n_outputs(self._h())

    @property
    def input_shape(self):
        """(channels, height, width) of one preprocessed image."""
        size = _api().vqm_model_input_size(self._h())
        return (_api().vqm_model_input_channels(self._h()), size, size)

    @property
    def labels(self):
        """Class names, index = class."""
        h = self._h()
        return [_api().vqm_model_label(h, i).decode("utf-8") for i in range(self.n_classes)]

    def preprocess_image_file(self, path, out=None):
        """Decodes an image file (JPEG/PNG/BMP) and preprocesses it as the model specifies:
        float32 of shape input_shape, one image of Session.run's input (the numbers
        Session.run_image_file runs). `out`: an optional C-contiguous float32 array of that
        shape to write into (e.g. a row of a batch). Thread-safe; releases the GIL."""
        if out is None:
            out = np.empty(self.input_shape, dtype=np.float32)
        elif (
            not isinstance(out, np.ndarray)
            or out.dtype != np.float32
            or out.shape != self.input_shape
            or not out.flags.c_contiguous
        ):
            raise ValueError(
                "vqm: out must be a C-contiguous float32 array of shape %s" % (self.input_shape,)
            )
        _check(
            _api().vqm_model_preprocess_image_file(
                self._h(),
                os.fsencode(path),
                out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                out.size,
            )
        )
        return out


class Session(_Owned):
    """One thread's state for running a model: buffers and kernels are prepared here."""

    _free, _kind = "vqm_session_free", "session"

    def __init__(self, model, n_threads=0, max_batch=1):
        """n_threads: OpenMP threads of this session's runs (0: the default). max_batch: images
        per internal forward (memory grows with it); run() takes any number of images."""
        params = _api().vqm_session_default_params()
        for name, value in (("n_threads", n_threads), ("max_batch", max_batch)):
            if not isinstance(value, int) or not -(2**31) <= value < 2**31:
                raise ValueError("vqm: %s must be a 32-bit integer, got %r" % (name, value))
            setattr(params, name, value)
        handle = ctypes.c_void_p()
        _check(_api().vqm_session_create(model._h(), ctypes.byref(params), ctypes.byref(handle)))
        self._handle = handle
        self.n_classes = model.n_classes
        self.n_outputs = model.n_outputs
        self.input_shape = model.input_shape

    def run(self, images):
        """Runs preprocessed images: a C-contiguous float32 numpy array of shape (N, C, H, W)
        matching the model's input_shape. Returns float32 outputs of shape (N, n_outputs): logits,
        or the embeddings of a model without a classifier head."""
        if not isinstance(images, np.ndarray):
            raise TypeError("vqm: images must be a numpy array, got %s" % type(images).__name__)
        if images.dtype != np.float32:
            raise TypeError(
                "vqm: images must be float32, got %s (use images.astype(np.float32))"
                % images.dtype
            )
        if images.ndim != 4 or images.shape[1:] != self.input_shape:
            raise ValueError(
                "vqm: images must have shape (N, %d, %d, %d), got %s"
                % (self.input_shape + (images.shape,))
            )
        if not images.flags.c_contiguous:
            raise ValueError(
                "vqm: images must be C-contiguous (use np.ascontiguousarray(images))"
            )
        n = images.shape[0]
        if n > 2**31 - 1:
            raise ValueError("vqm: at most 2^31 - 1 images per call")
        logits = np.empty((n, self.n_outputs), dtype=np.float32)
        _check(
            _api().vqm_session_run(
                self._h(),
                images.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                n,
                logits.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                logits.size,
            )
        )
        return logits

    def run_image_file(self, path):
        """Decodes an image file (JPEG/PNG/BMP), preprocesses it as the model specifies and runs
        it. Returns float32 outputs of shape (n_outputs,): logits, or the embedding."""
        logits = np.empty(self.n_outputs, dtype=np.float32)
        _check(
            _api().vqm_session_run_image_file(
                self._h(),
                os.fsencode(path),
                logits.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                logits.size,
            )
        )
        return logits
