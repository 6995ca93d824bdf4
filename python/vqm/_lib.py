"""Finding and loading libvqm.so; the ctypes prototypes of the C API (runtime/include/vqm/vqm.h).

Where the library comes from, first match wins:
  1. vqm.load_library(path), called before anything else;
  2. the VQM_LIBRARY environment variable (e.g. build/lib/libvqm.so of a build tree);
  3. libvqm.so.<major> beside this file: the copy a wheel bundles (scripts/build-wheel.sh);
  4. the library installed next to this package by `cmake --install` (_install.py);
  5. the dynamic loader's search (ldconfig cache, LD_LIBRARY_PATH): a system-wide install.
"""

import ctypes
import ctypes.util
import os
import threading

_lock = threading.Lock()
_lib = None
_lib_path = None


class ModelParams(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("reserved", ctypes.c_int32)]


class SessionParams(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("n_threads", ctypes.c_int32),
        ("max_batch", ctypes.c_int32),
    ]


_handle = ctypes.c_void_p
_status = ctypes.c_int
_float_p = ctypes.POINTER(ctypes.c_float)

# name: (restype, argtypes)
_PROTOTYPES = {
    "vqm_version": (ctypes.c_char_p, []),
    "vqm_status_string": (ctypes.c_char_p, [_status]),
    "vqm_last_error": (ctypes.c_char_p, []),
    "vqm_model_default_params": (ModelParams, []),
    "vqm_session_default_params": (SessionParams, []),
    "vqm_model_load": (
        _status,
        [ctypes.c_char_p, ctypes.POINTER(ModelParams), ctypes.POINTER(_handle)],
    ),
    "vqm_model_load_from_memory": (
        _status,
        [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ModelParams), ctypes.POINTER(_handle)],
    ),
    "vqm_model_free": (None, [_handle]),
    "vqm_model_n_classes": (ctypes.c_int32, [_handle]),
    "vqm_model_n_outputs": (ctypes.c_int32, [_handle]),
    "vqm_model_input_channels": (ctypes.c_int32, [_handle]),
    "vqm_model_input_size": (ctypes.c_int32, [_handle]),
    "vqm_model_label": (ctypes.c_char_p, [_handle, ctypes.c_int32]),
    "vqm_session_create": (
        _status,
        [_handle, ctypes.POINTER(SessionParams), ctypes.POINTER(_handle)],
    ),
    "vqm_session_free": (None, [_handle]),
    "vqm_session_run": (
        _status,
        [_handle, _float_p, ctypes.c_int32, _float_p, ctypes.c_size_t],
    ),
    "vqm_session_run_image_file": (
        _status,
        [_handle, ctypes.c_char_p, _float_p, ctypes.c_size_t],
    ),
    "vqm_model_preprocess_image_file": (
        _status,
        [_handle, ctypes.c_char_p, _float_p, ctypes.c_size_t],
    ),
}


def _bundled_library():
    here = os.path.dirname(os.path.abspath(__file__))
    found = sorted(f for f in os.listdir(here) if f.startswith("libvqm.so."))
    return os.path.join(here, found[0]) if found else None


def _installed_library():
    try:
        from . import _install  # written by `cmake --install` only
    except ImportError:
        return None
    return os.path.normpath(os.path.join(os.path.dirname(__file__), _install.LIBRARY))


def _open(path):
    lib = ctypes.CDLL(path)
    for name, (restype, argtypes) in _PROTOTYPES.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    return lib


def load_library(path=None):
    """Loads libvqm.so (from `path` if given, else as described in this module's docstring) and
    returns the path it was loaded from. Calling it again returns the loaded library's path; a
    different explicit path then is an error, since one process holds one libvqm."""
    global _lib, _lib_path
    with _lock:
        if _lib is not None:
            if path is not None and os.fspath(path) != _lib_path:
                raise RuntimeError(
                    "vqm: libvqm is already loaded from %s; load_library(%r) must come first"
                    % (_lib_path, os.fspath(path))
                )
            return _lib_path
        if path is not None:
            candidates = [os.fspath(path)]
        elif os.environ.get("VQM_LIBRARY"):
            candidates = [os.environ["VQM_LIBRARY"]]
        else:
            candidates = [
                p
                for p in (_bundled_library(), _installed_library(), ctypes.util.find_library("vqm"))
                if p
            ]
        if not candidates:
            raise OSError(
                "vqm: libvqm.so not found; install vqm (its wheel, or cmake --install), set "
                "VQM_LIBRARY to the library (e.g. build/lib/libvqm.so) or call "
                "vqm.load_library(path)"
            )
        errors = []
        for candidate in candidates:
            try:
                _lib = _open(candidate)
                _lib_path = candidate
                return candidate
            except (OSError, AttributeError) as e:  # no file, wrong architecture, no symbol
                errors.append(str(e))
        raise OSError("vqm: cannot load libvqm: " + "; ".join(errors))


def lib():
    """The loaded library, loading it on first use."""
    if _lib is None:
        load_library()
    return _lib
