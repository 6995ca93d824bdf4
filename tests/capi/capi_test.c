/* The C API, used from C99 as an embedding application would: load, inspect, run against the
 * PyTorch reference, misuse (NULLs, small buffers, bad files, bad params, an older caller's
 * shorter params struct, out-of-range statuses, hostile input values), and threads sharing a
 * model. Every misuse must be a status and a message, never a crash: the ASan+UBSan build runs
 * this too. Usage: capi_test DATA_DIR MODEL.vqm */
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vqm/vqm.h"

static int g_failures = 0;
static int g_checks = 0;

#define CHECK(cond)                                                            \
  do {                                                                         \
    ++g_checks;                                                                \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      ++g_failures;                                                            \
    }                                                                          \
  } while (0)

static void *read_file(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  void *buf;
  long n;
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  n = ftell(f);
  fseek(f, 0, SEEK_SET);
  buf = malloc((size_t)n + 1);
  if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
    free(buf);
    buf = NULL;
  }
  fclose(f);
  *size = (size_t)n;
  return buf;
}

enum { kImages = 4, kClasses = 10, kPixels = 28 * 28, kIters = 25 };

typedef struct {
  const vqm_model *model;
  const float *input;
  float logits[kImages * kClasses];
  vqm_status status;
} worker_args;

static void *worker(void *p) {
  worker_args *a = (worker_args *)p;
  vqm_session *s = NULL;
  vqm_session_params sp = vqm_session_default_params();
  int i;
  sp.max_batch = kImages;
  sp.n_threads = 1;
  a->status = vqm_session_create(a->model, &sp, &s);
  for (i = 0; i < kIters && a->status == VQM_OK; ++i)
    a->status = vqm_session_run(s, a->input, kImages, a->logits, kImages * kClasses);
  vqm_session_free(s);
  return NULL;
}

static void *failing_load(void *unused) {
  vqm_model *m = NULL;
  (void)unused;
  if (vqm_model_load("/nonexistent/other.vqm", NULL, &m) != VQM_ERR_IO ||
      strstr(vqm_last_error(), "other.vqm") == NULL)
    ++g_failures;
  return NULL;
}

int main(int argc, char **argv) {
  char path[4096];
  size_t size = 0;
  float *input, *ref;
  float logits[kImages * kClasses];
  vqm_model *model = NULL, *model_mem = NULL;
  vqm_session *session = NULL;
  vqm_session_params sp;
  void *bytes;
  int i;
  double max_diff = 0;

  if (argc != 3) {
    fprintf(stderr, "usage: %s DATA_DIR MODEL.vqm\n", argv[0]);
    return 2;
  }
  snprintf(path, sizeof path, "%s/reference/fmnist_first4_input.f32", argv[1]);
  input = (float *)read_file(path, &size);
  CHECK(input != NULL && size == sizeof(float) * kImages * kPixels);
  snprintf(path, sizeof path, "%s/reference/fmnist_first4_logits.f32", argv[1]);
  ref = (float *)read_file(path, &size);
  CHECK(ref != NULL && size == sizeof(float) * kImages * kClasses);
  if (!input || !ref) return 1;

  /* Basics. */
  CHECK(strlen(vqm_version()) > 0);
  CHECK(strcmp(vqm_status_string(VQM_OK), "ok") == 0);
  CHECK(strlen(vqm_status_string((vqm_status)12345)) > 0);
  CHECK(strcmp(vqm_status_string((vqm_status)-1), "unknown status") == 0);

  /* Misuse: each a status and a message, never a crash. */
  model = (vqm_model *)&model; /* a stale value: every failure must leave *out NULL */
  CHECK(vqm_model_load(NULL, NULL, &model) == VQM_ERR_INVALID_ARGUMENT && model == NULL);
  CHECK(vqm_model_load(argv[2], NULL, NULL) == VQM_ERR_INVALID_ARGUMENT);
  CHECK(vqm_model_load("/nonexistent/model.vqm", NULL, &model) == VQM_ERR_IO && model == NULL);
  CHECK(strstr(vqm_last_error(), "/nonexistent/model.vqm") != NULL);
  CHECK(vqm_model_load(argv[1], NULL, &model) == VQM_ERR_IO); /* a directory */
  CHECK(vqm_model_load_from_memory("VQMF", 4, NULL, &model) == VQM_ERR_FORMAT);
  CHECK(strlen(vqm_last_error()) > 0);
  CHECK(vqm_session_create(NULL, NULL, &session) == VQM_ERR_INVALID_ARGUMENT);
  CHECK(vqm_session_run(NULL, input, 1, logits, kClasses) == VQM_ERR_INVALID_ARGUMENT);
  vqm_model_free(NULL);
  vqm_session_free(NULL);
  CHECK(vqm_model_n_classes(NULL) == 0 && vqm_model_label(NULL, 0) == NULL);
  {
    vqm_model_params bad = vqm_model_default_params();
    bad.struct_size = 0;
    CHECK(vqm_model_load(argv[2], &bad, &model) == VQM_ERR_INVALID_ARGUMENT);
    bad.struct_size = (size_t)1 << 20; /* garbage, not a struct size */
    CHECK(vqm_model_load(argv[2], &bad, &model) == VQM_ERR_INVALID_ARGUMENT);
    bad = vqm_model_default_params();
    bad.reserved = 7;
    CHECK(vqm_model_load(argv[2], &bad, &model) == VQM_ERR_INVALID_ARGUMENT && model == NULL);
    CHECK(strstr(vqm_last_error(), "reserved") != NULL);
  }
  model = (vqm_model *)&model;
  CHECK(vqm_model_load_from_memory(NULL, 16, NULL, &model) == VQM_ERR_INVALID_ARGUMENT &&
        model == NULL);
  CHECK(vqm_model_load_from_memory(NULL, 0, NULL, &model) == VQM_ERR_FORMAT && model == NULL);
  CHECK(vqm_model_input_channels(NULL) == 0 && vqm_model_input_size(NULL) == 0);
  CHECK(vqm_session_run_image_file(NULL, "x.png", logits, kClasses) == VQM_ERR_INVALID_ARGUMENT);

  /* Load and inspect. */
  CHECK(vqm_model_load(argv[2], NULL, &model) == VQM_OK);
  if (!model) return 1;
  CHECK(strcmp(vqm_last_error(), "") == 0);
  CHECK(vqm_model_n_classes(model) == kClasses);
  CHECK(vqm_model_input_channels(model) == 1 && vqm_model_input_size(model) == 28);
  CHECK(vqm_model_label(model, 0) && strcmp(vqm_model_label(model, 0), "T-shirt/top") == 0);
  CHECK(vqm_model_label(model, 9) && strcmp(vqm_model_label(model, 9), "Ankle boot") == 0);
  CHECK(vqm_model_label(model, 10) == NULL && vqm_model_label(model, -1) == NULL);
  CHECK(vqm_model_label(model, 2147483647) == NULL);

  /* Session params out of range, and NULL out. */
  CHECK(vqm_session_create(model, NULL, NULL) == VQM_ERR_INVALID_ARGUMENT);
  sp = vqm_session_default_params();
  sp.max_batch = 0;
  CHECK(vqm_session_create(model, &sp, &session) == VQM_ERR_INVALID_ARGUMENT && session == NULL);
  CHECK(strstr(vqm_last_error(), "max_batch") != NULL);
  sp.max_batch = 1000000;
  CHECK(vqm_session_create(model, &sp, &session) == VQM_ERR_INVALID_ARGUMENT && session == NULL);
  sp = vqm_session_default_params();
  sp.n_threads = -1;
  CHECK(vqm_session_create(model, &sp, &session) == VQM_ERR_INVALID_ARGUMENT && session == NULL);
  /* A caller built against an older header whose struct ends before max_batch: only the fields
   * it has are read (ASan would catch a read past the allocation). */
  {
    const size_t old_size = offsetof(vqm_session_params, max_batch);
    unsigned char *old = (unsigned char *)malloc(old_size);
    CHECK(old != NULL);
    if (old) {
      sp = vqm_session_default_params();
      sp.struct_size = old_size;
      sp.n_threads = 1;
      memcpy(old, &sp, old_size);
      CHECK(vqm_session_create(model, (const vqm_session_params *)(void *)old, &session) == VQM_OK);
      CHECK(vqm_session_run(session, input, 1, logits, kClasses) == VQM_OK);
      vqm_session_free(session);
      session = NULL;
      free(old);
    }
  }

  /* Run against PyTorch's logits. */
  sp = vqm_session_default_params();
  sp.max_batch = kImages;
  sp.n_threads = 1;
  CHECK(vqm_session_create(model, &sp, &session) == VQM_OK);
  CHECK(vqm_session_run(session, input, kImages, logits, kImages * kClasses - 1) ==
        VQM_ERR_BUFFER_TOO_SMALL);
  CHECK(vqm_session_run(session, input, -1, logits, kImages * kClasses) ==
        VQM_ERR_INVALID_ARGUMENT);
  CHECK(vqm_session_run(session, NULL, kImages, logits, kImages * kClasses) ==
        VQM_ERR_INVALID_ARGUMENT);
  CHECK(vqm_session_run_image_file(session, "/nonexistent.png", logits, kClasses) == VQM_ERR_IO);
  CHECK(vqm_session_run_image_file(session, argv[1], logits, kClasses) == VQM_ERR_IO);
  CHECK(vqm_session_run_image_file(session, NULL, logits, kClasses) == VQM_ERR_INVALID_ARGUMENT);
  snprintf(path, sizeof path, "%s/images/fmnist_t10k_0_ankle_boot.png", argv[1]);
  CHECK(vqm_session_run_image_file(session, path, logits, kClasses - 1) ==
        VQM_ERR_BUFFER_TOO_SMALL);
  CHECK(vqm_session_run_image_file(session, path, logits, kClasses) == VQM_OK);
  /* Preprocessing alone, then a run: the same numbers as run_image_file. */
  {
    float pixels[kPixels + 1], again[kClasses];
    CHECK(vqm_model_preprocess_image_file(model, path, pixels, kPixels - 1) ==
          VQM_ERR_BUFFER_TOO_SMALL);
    CHECK(vqm_model_preprocess_image_file(NULL, path, pixels, kPixels) == VQM_ERR_INVALID_ARGUMENT);
    CHECK(vqm_model_preprocess_image_file(model, NULL, pixels, kPixels) ==
          VQM_ERR_INVALID_ARGUMENT);
    CHECK(vqm_model_preprocess_image_file(model, "/nonexistent.png", pixels, kPixels) ==
          VQM_ERR_IO);
    CHECK(strstr(vqm_last_error(), "/nonexistent.png") != NULL);
    pixels[kPixels] = 42.0f; /* past one image: must stay untouched */
    CHECK(vqm_model_preprocess_image_file(model, path, pixels, kPixels + 1) == VQM_OK);
    CHECK(pixels[kPixels] == 42.0f);
    CHECK(vqm_session_run(session, pixels, 1, again, kClasses) == VQM_OK);
    CHECK(memcmp(again, logits, sizeof again) == 0);
  }
  CHECK(vqm_session_run(session, input, 0, NULL, 0) == VQM_OK); /* nothing to do */
  CHECK(vqm_session_run(session, input, kImages, NULL, kImages * kClasses) ==
        VQM_ERR_INVALID_ARGUMENT);
  CHECK(vqm_session_run(session, input, 2147483647, logits, kImages * kClasses) ==
        VQM_ERR_BUFFER_TOO_SMALL);
  /* Hostile values: the logits may be garbage, the call must not crash (UBSan checks the
   * float-to-int conversions). */
  {
    float odd[kPixels];
    const float values[] = {NAN, INFINITY, -INFINITY, 1e30f, -1e30f, 0.0f};
    for (i = 0; i < kPixels; ++i) odd[i] = values[i % 6];
    CHECK(vqm_session_run(session, odd, 1, logits, kClasses) == VQM_OK);
  }
  /* The session still works after errors. */
  CHECK(vqm_session_run(session, input, kImages, logits, kImages * kClasses) == VQM_OK);
  for (i = 0; i < kImages * kClasses; ++i) {
    const double d = fabs((double)logits[i] - (double)ref[i]);
    if (d > max_diff) max_diff = d;
  }
  printf("capi: max |logit - pytorch| = %.3g\n", max_diff);
  CHECK(max_diff < 1e-3);

  /* Loading from memory gives the same model. */
  bytes = read_file(argv[2], &size);
  CHECK(bytes != NULL);
  if (bytes) {
    float again[kImages * kClasses];
    vqm_session *s2 = NULL;
    CHECK(vqm_model_load_from_memory(bytes, size, NULL, &model_mem) == VQM_OK);
    free(bytes); /* the model holds its own copy */
    CHECK(vqm_session_create(model_mem, &sp, &s2) == VQM_OK);
    CHECK(vqm_session_run(s2, input, kImages, again, kImages * kClasses) == VQM_OK);
    CHECK(memcmp(again, logits, sizeof again) == 0);
    vqm_session_free(s2);
    vqm_model_free(model_mem);
  }

  /* Two threads, each with its own session on the shared model: identical to one thread. */
  {
    pthread_t threads[2];
    worker_args args[2];
    for (i = 0; i < 2; ++i) {
      args[i].model = model;
      args[i].input = input;
      args[i].status = VQM_ERR_INTERNAL;
      CHECK(pthread_create(&threads[i], NULL, worker, &args[i]) == 0);
    }
    for (i = 0; i < 2; ++i) {
      pthread_join(threads[i], NULL);
      CHECK(args[i].status == VQM_OK);
      CHECK(memcmp(args[i].logits, logits, sizeof logits) == 0);
    }
  }

  /* Error messages are per thread: a failure on another thread does not show here. */
  {
    pthread_t failing;
    CHECK(vqm_session_run(session, input, 1, logits, kClasses) == VQM_OK);
    CHECK(pthread_create(&failing, NULL, failing_load, NULL) == 0);
    pthread_join(failing, NULL);
    CHECK(strcmp(vqm_last_error(), "") == 0);
  }

  /* A session keeps its model alive after vqm_model_free. */
  vqm_model_free(model);
  model = NULL;
  CHECK(vqm_session_run(session, input, kImages, logits, kImages * kClasses) == VQM_OK);
  vqm_session_free(session);
  free(input);
  free(ref);
  printf("capi: %d checks, %d failed\n", g_checks, g_failures);
  return g_failures ? 1 : 0;
}
