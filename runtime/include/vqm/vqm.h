/* vqm: vision-transformer inference with post-training quantization. The public C API.
 *
 * Conventions
 * - Every function returning vqm_status reports failure through it and never aborts; the
 *   message for the last failure on the calling thread is vqm_last_error().
 * - A vqm_model is immutable after loading and may be shared by any number of threads and
 *   sessions. A vqm_session is one thread's working state: use it from one thread at a time.
 * - Objects returned through `out` parameters are owned by the caller and released with the
 *   matching *_free function (NULL is accepted by every *_free).
 * - Params structs start with their own size, so they can grow without breaking callers: obtain
 *   them from the *_default_params() functions and change fields. A struct_size from 1 to 4096 is
 *   accepted: fields past it keep their defaults, bytes past the fields this library knows are
 *   ignored.
 * - Each function below lists the statuses it returns and when, without the VQM_ERR_ prefix.
 *   Besides those, any function returning vqm_status may return INTERNAL (a bug, or a failure
 *   inside oneDNN) or OUT_OF_MEMORY (an allocation failed); OUT_OF_MEMORY is listed only where
 *   the input decides how much is allocated. Limits (LIMIT) are those of docs/robustness.md.
 */
#ifndef VQM_VQM_H
#define VQM_VQM_H

#include <stddef.h>
#include <stdint.h>

#if defined(VQM_BUILDING_LIBRARY)
#define VQM_API __attribute__((visibility("default")))
#else
#define VQM_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef enum vqm_status {
  VQM_OK = 0,
  VQM_ERR_INVALID_ARGUMENT = 1, /* NULL handle, bad size, bad parameter */
  VQM_ERR_IO = 2,               /* file missing or unreadable */
  VQM_ERR_FORMAT = 3,           /* not a valid .vqm / image, or corrupted */
  VQM_ERR_UNSUPPORTED = 4,      /* valid but not runnable by this build */
  VQM_ERR_OUT_OF_MEMORY = 5,
  VQM_ERR_LIMIT = 6,            /* a size exceeds a documented limit */
  VQM_ERR_BUFFER_TOO_SMALL = 7, /* the caller's output buffer is too small */
  VQM_ERR_INTERNAL = 8          /* a bug or a backend failure */
} vqm_status;

typedef struct vqm_model vqm_model;
typedef struct vqm_session vqm_session;

typedef struct vqm_model_params {
  size_t struct_size; /* sizeof(vqm_model_params) */
  int32_t reserved;   /* must be 0 */
} vqm_model_params;

typedef struct vqm_session_params {
  size_t struct_size; /* sizeof(vqm_session_params) */
  int32_t n_threads;  /* OpenMP threads for this session's runs, 0..1024; 0 = default */
  int32_t max_batch;  /* images per internal forward (memory grows with it); 1..4096 */
} vqm_session_params;

/* Version of the library, e.g. "0.1.0". Static string; never NULL. */
VQM_API const char *vqm_version(void);
/* Human-readable name of a status ("unknown status" for a value outside the enum). Static
 * string; never NULL. */
VQM_API const char *vqm_status_string(vqm_status status);
/* Message of the last call returning vqm_status on this thread if it failed; "" if it succeeded
 * or there was none. Never NULL. Valid until the next vqm call on this thread. */
VQM_API const char *vqm_last_error(void);

/* Defaults with struct_size set (model: reserved 0; session: n_threads 0, max_batch 1). Cannot
 * fail. */
VQM_API vqm_model_params vqm_model_default_params(void);
VQM_API vqm_session_params vqm_session_default_params(void);

/* Loads and fully validates a .vqm file. `params` may be NULL for defaults. On success *out owns
 * a new model; on failure *out is NULL (if `out` is not NULL). Returns
 *   OK
 *   INVALID_ARGUMENT  `path` or `out` is NULL; params->struct_size is 0 or over 4096;
 *                     params->reserved is not 0
 *   IO                the file cannot be opened, stat'ed or fully read (missing, no permission,
 *                     short read), or is a directory or not a regular file
 *   FORMAT            not a .vqm, truncated or corrupted (header, JSON, tensor table), or not a
 *                     valid model: a bad "model", "preprocess", "labels" or "quantization"
 *                     section, a missing, misshaped or unexpected tensor, a bad scale tensor
 *   UNSUPPORTED       a format version newer than 1, an unknown dtype, "class_token": false, or
 *                     a weight dtype this build cannot run (integers only for linear layers)
 *   LIMIT             file over 8 GiB, JSON over 64 MiB, over 100000 tensors, a tensor over
 *                     4 GiB, a rank over 8 or a dimension over 2^31
 *   OUT_OF_MEMORY     the file or a weight converted to f32 does not fit in memory */
VQM_API vqm_status vqm_model_load(const char *path, const vqm_model_params *params,
                                  vqm_model **out);
/* Same from a buffer; the bytes are copied, so `data` may be freed after the call. On failure
 * *out is NULL (if `out` is not NULL). Returns
 *   OK
 *   INVALID_ARGUMENT  `data` is NULL and `size` is not 0; `out` is NULL; params as above
 *   FORMAT            as above; also `size` 0 (with `data` NULL or not): no .vqm is empty
 *   UNSUPPORTED       as above
 *   LIMIT             `size` over 8 GiB; the other limits as above
 *   OUT_OF_MEMORY     the copy or a weight converted to f32 does not fit in memory
 * Never IO. */
VQM_API vqm_status vqm_model_load_from_memory(const void *data, size_t size,
                                              const vqm_model_params *params, vqm_model **out);
/* Releases a model; NULL does nothing. Sessions created from it keep it alive until they are
 * freed. */
VQM_API void vqm_model_free(vqm_model *model);

/* Geometry and labels. Cannot fail: they return 0 (NULL for the label) for a NULL model, and
 * vqm_model_label returns NULL for i < 0 or i >= n_classes.
 * n_outputs is what a run writes per image: the n_classes logits of a classifier, or, for a model
 * without a classifier head (n_classes 0: DINOv2, CLIP towers without projection, ViTModel), its
 * pooled embedding (embed_dim values). */
VQM_API int32_t vqm_model_n_classes(const vqm_model *model);
VQM_API int32_t vqm_model_n_outputs(const vqm_model *model);
VQM_API int32_t vqm_model_input_channels(const vqm_model *model);
VQM_API int32_t vqm_model_input_size(const vqm_model *model); /* square side in pixels */
/* Label of class i (the file's "labels", else "class <i>"); the string lives as long as the
 * model. */
VQM_API const char *vqm_model_label(const vqm_model *model, int32_t i);

/* Creates a session: all buffers and kernels are prepared here. `params` may be NULL. On failure
 * *out is NULL (if `out` is not NULL). Returns
 *   OK
 *   INVALID_ARGUMENT  `out` or `model` is NULL; params->struct_size is 0 or over 4096;
 *                     max_batch outside [1, 4096]; n_threads outside [0, 1024]
 *   LIMIT             this model's activations for max_batch images need over 16 GiB
 *   FORMAT            a quantized model (it has a "quantization" section) has a linear weight
 *                     not stored as integers, so it cannot run on integer kernels (not
 *                     checked when the environment sets VQM_EXECUTION=simulated)
 *   OUT_OF_MEMORY     the session's buffers do not fit in memory */
VQM_API vqm_status vqm_session_create(const vqm_model *model, const vqm_session_params *params,
                                      vqm_session **out);
/* Releases a session and its hold on the model; NULL does nothing. */
VQM_API void vqm_session_free(vqm_session *session);

/* Runs n preprocessed images, NCHW float32 (n * channels * size * size values, which cannot be
 * checked; any values are accepted), and writes n * n_outputs values to `out` (logits, or
 * embeddings: see vqm_model_n_outputs). n_out is the capacity of `out` in floats. n == 0 does
 * nothing (`nchw` and `out` may then be NULL). Returns
 *   OK
 *   INVALID_ARGUMENT  `session` is NULL; n < 0; n > 0 and `nchw` or `out` is NULL
 *   BUFFER_TOO_SMALL  n_out < n * n_outputs (nothing is written) */
VQM_API vqm_status vqm_session_run(vqm_session *session, const float *nchw, int32_t n, float *out,
                                   size_t n_out);
/* Decodes an image file (JPEG/PNG/BMP), preprocesses it as the model specifies and runs it,
 * writing n_outputs values to `out`. Returns
 *   OK
 *   INVALID_ARGUMENT  `session`, `path` or `out` is NULL; the model takes 2 or 4 input
 *                     channels (images decode to 1 or 3)
 *   BUFFER_TOO_SMALL  n_out < n_outputs (checked before the file is read)
 *   IO                the file is missing, a directory, or cannot be opened or fully read
 *   FORMAT            the file is empty, not a JPEG/PNG/BMP, or corrupted
 *   LIMIT             the file is 2 GiB or more; a declared width or height is 0 or over 16384,
 *                     or width * height is over 64 Mi; the image resized for the model (shorter
 *                     side to its "resize") has a side over 16384 or over 64 Mi pixels
 *   OUT_OF_MEMORY     reading, decoding or resizing the image does not fit in memory */
VQM_API vqm_status vqm_session_run_image_file(vqm_session *session, const char *path, float *out,
                                              size_t n_out);

/* Decodes an image file (JPEG/PNG/BMP) and preprocesses it as the model specifies (resize, crop,
 * normalise), writing input_channels * input_size * input_size floats (CHW) to `out`: one image
 * of vqm_session_run's input. With it a caller decodes on its own threads and batches the images
 * for vqm_session_run; the numbers are those vqm_session_run_image_file runs. Thread-safe (the
 * model is only read). n_out is the capacity of `out` in floats. Returns
 *   OK
 *   INVALID_ARGUMENT  `model`, `path` or `out` is NULL; the model takes 2 or 4 input channels
 *   BUFFER_TOO_SMALL  n_out is below one image's input (checked before the file is read)
 *   IO, FORMAT, LIMIT, OUT_OF_MEMORY  as vqm_session_run_image_file */
VQM_API vqm_status vqm_model_preprocess_image_file(const vqm_model *model, const char *path,
                                                   float *out, size_t n_out);

#ifdef __cplusplus
}
#endif

#endif /* VQM_VQM_H */
