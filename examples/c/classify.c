/* Classifies images with a .vqm model through the C API and prints the top-5 classes of each.
 * Usage: classify_c MODEL.vqm IMAGE...
 * Build: examples/CMakeLists.txt (find_package), or with pkg-config:
 *   cc -std=c99 classify.c $(pkg-config --cflags --libs vqm) -lm -o classify_c */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <vqm/vqm.h>

enum { kTop = 5 };

/* Prints the k most probable classes of one image's logits, most probable first. */
static void print_top(const vqm_model *model, const float *logits, int32_t n) {
  float max = logits[0];
  double sum = 0;
  int chosen[kTop];
  int32_t i;
  int r, k = n < kTop ? (int)n : kTop;
  for (i = 1; i < n; ++i)
    if (logits[i] > max) max = logits[i];
  for (i = 0; i < n; ++i) sum += exp((double)(logits[i] - max));
  for (r = 0; r < k; ++r) {
    int best = -1, j;
    for (i = 0; i < n; ++i) {
      int taken = 0;
      for (j = 0; j < r; ++j) taken |= chosen[j] == i;
      if (!taken && (best < 0 || logits[i] > logits[best])) best = (int)i;
    }
    chosen[r] = best;
    printf("  %6.2f%%  %4d  %s\n", 100.0 * exp((double)(logits[best] - max)) / sum, best,
           vqm_model_label(model, best));
  }
}

int main(int argc, char **argv) {
  vqm_model *model = NULL;
  vqm_session *session = NULL;
  float *logits;
  int32_t n_classes;
  int i, failures = 0;

  if (argc < 3) {
    fprintf(stderr, "usage: %s MODEL.vqm IMAGE...\n", argv[0]);
    return 2;
  }
  if (vqm_model_load(argv[1], NULL, &model) != VQM_OK ||
      vqm_session_create(model, NULL, &session) != VQM_OK) {
    fprintf(stderr, "classify_c: error: %s\n", vqm_last_error());
    vqm_model_free(model);
    return 1;
  }
  n_classes = vqm_model_n_classes(model);
  logits = (float *)malloc(sizeof(float) * (size_t)n_classes);
  if (!logits) return 1;
  for (i = 2; i < argc; ++i) {
    /* Decodes the file and preprocesses it as the model specifies (timm's eval transform). */
    if (vqm_session_run_image_file(session, argv[i], logits, (size_t)n_classes) != VQM_OK) {
      fprintf(stderr, "classify_c: error: %s\n", vqm_last_error());
      ++failures;
      continue;
    }
    printf("%s\n", argv[i]);
    print_top(model, logits, n_classes);
  }
  free(logits);
  vqm_session_free(session);
  vqm_model_free(model);
  return failures ? 1 : 0;
}
