// Accuracy of a model on a labelled data set (vit-eval, vit-quantize --eval-data): top-1, top-5
// and per class; and the agreement of two models' outputs (a quantized model and its fp32
// original: embedding cosine, top-1 agreement). Both run several sessions on the shared model,
// one per worker thread, each decoding and preprocessing its own batches (on JPEG folders
// decoding costs as much as the forward of a small model).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "apps/data/dataset.h"
#include "apps/progress.h"
#include "runtime/engine/vit.h"

namespace vqm::app {

struct EvalOptions {
  int batch = 32;    // images per forward pass
  int threads = 0;   // CPU threads in all (0: all cores)
  int sessions = 0;  // worker threads, each with a session of threads/sessions OpenMP threads
                     // (0: one per thread)
  bool keep_outputs = false;  // evaluate(): keep EvalResult::outputs
};

struct EvalResult {
  int n = 0, top1 = 0, top5 = 0;
  double seconds = 0;
  // Per class index of the model: images, top-1 and top-5 hits.
  std::vector<int> class_n, class_top1, class_top5;
  std::vector<float> outputs;  // n x classes (logits) in `items` order, with keep_outputs
};

// The model's outputs (n x n_outputs: logits or embeddings) for data items `items`, in that
// order. Labels are not needed. `progress` may be null; `seconds` receives the wall time.
std::vector<float> run_outputs(const std::shared_ptr<const VitModel> &model, const Dataset &data,
                               const std::vector<int> &items, const EvalOptions &options,
                               ProgressBar *progress, double *seconds = nullptr);

// How closely outputs `a` agree with reference outputs `b` (both n x k, row per image).
struct Agreement {
  int n = 0;
  double cosine_mean = 0, cosine_min = 0;
  int cosine_min_row = 0;  // the row of the minimum
  int top1_same = 0;       // rows whose largest output is at the same index (classifiers)
};
Agreement agreement(const float *a, const float *b, int n, int k);

// Throws vqm::Error when the data set is unlabelled, a label is outside the model's classes,
// a sorted-folder data set has a different number of classes than the model (the indices would
// not mean the model's classes: a class-index file is needed), or an image cannot be decoded.
void check_labels(const Dataset &data, const VitModel &model);

// Top-1 / top-5 and per-class hits of classifier outputs: `outputs` holds labels.size() rows of
// `classes` logits, row i of an image of class labels[i] (each in [0, classes)). The one scoring
// rule of vit-eval, whether the outputs come from a run or from a batch job's parts. Leaves
// `seconds` and `outputs` empty.
EvalResult score(const float *outputs, const std::vector<int> &labels, int classes);

// Evaluates `model` (a classifier) on labelled data items `items` (see Dataset::select).
// `progress` may be null.
EvalResult evaluate(const std::shared_ptr<const VitModel> &model, const Dataset &data,
                    const std::vector<int> &items, const EvalOptions &options,
                    ProgressBar *progress);

// Name of class k for reports: the model's label, else the data set's folder name, else "k".
std::string class_name(const VitModel &model, const Dataset &data, int k);

}  // namespace vqm::app
