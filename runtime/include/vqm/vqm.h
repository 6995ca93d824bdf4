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
 *   them from the *_default_params() functions and change fields.
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
  int32_t n_threads;  /* OpenMP threads for this session's runs; 0 = default */
  int32_t max_batch;  /* images per internal forward (memory grows with it); >= 1 */
} vqm_session_params;

/* Version of the library, e.g. "0.1.0". Static string. */
VQM_API const char *vqm_version(void);
/* Human-readable name of a status. Static string; never NULL. */
VQM_API const char *vqm_status_string(vqm_status status);
/* Message of the last failure on this thread ("" if none). Valid until the next vqm call on this
 * thread. */
VQM_API const char *vqm_last_error(void);

VQM_API vqm_model_params vqm_model_default_params(void);
VQM_API vqm_session_params vqm_session_default_params(void);

/* Loads and fully validates a .vqm file. `params` may be NULL for defaults. On success *out owns
 * a new model. Returns OK, INVALID_ARGUMENT, IO, FORMAT, UNSUPPORTED, LIMIT, OUT_OF_MEMORY. */
VQM_API vqm_status vqm_model_load(const char *path, const vqm_model_params *params,
                                  vqm_model **out);
/* Same from a buffer; the bytes are copied, so `data` may be freed after the call. */
VQM_API vqm_status vqm_model_load_from_memory(const void *data, size_t size,
                                              const vqm_model_params *params, vqm_model **out);
/* Releases a model. Sessions created from it keep it alive until they are freed. */
VQM_API void vqm_model_free(vqm_model *model);

/* Geometry and labels. Return 0 / NULL for a NULL model or an index out of range. */
VQM_API int32_t vqm_model_n_classes(const vqm_model *model);
VQM_API int32_t vqm_model_input_channels(const vqm_model *model);
VQM_API int32_t vqm_model_input_size(const vqm_model *model); /* square side in pixels */
/* Label of class i; the string lives as long as the model. */
VQM_API const char *vqm_model_label(const vqm_model *model, int32_t i);

/* Creates a session: all buffers and kernels are prepared here. `params` may be NULL. */
VQM_API vqm_status vqm_session_create(const vqm_model *model, const vqm_session_params *params,
                                      vqm_session **out);
VQM_API void vqm_session_free(vqm_session *session);

/* Runs n preprocessed images, NCHW float32 (n * channels * size * size values), and writes
 * n * n_classes logits. n_logits is the capacity of `logits` in floats: BUFFER_TOO_SMALL if it is
 * less than n * n_classes. */
VQM_API vqm_status vqm_session_run(vqm_session *session, const float *nchw, int32_t n,
                                   float *logits, size_t n_logits);
/* Decodes an image file (JPEG/PNG/BMP), preprocesses it as the model specifies and runs it. */
VQM_API vqm_status vqm_session_run_image_file(vqm_session *session, const char *path, float *logits,
                                              size_t n_logits);

#ifdef __cplusplus
}
#endif

#endif /* VQM_VQM_H */
