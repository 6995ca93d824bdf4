#include "apps/evaluate.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <exception>
#include <mutex>
#include <thread>

#include "apps/app_common.h"
#include "runtime/io/error.h"

namespace vqm::app {

void check_labels(const Dataset &data, const VitModel &model) {
  const int classes = model.config().num_classes;
  if (!data.labelled())
    fail(ErrorCode::invalid_argument,
         data.source() +
             " has no labels: evaluation needs class folders (DIR/<class>/...) or "
             "idx label files");
  const int folders = static_cast<int>(data.class_names().size());
  if (!data.is_idx() && data.class_index().empty() && folders != classes)
    fail(ErrorCode::invalid_argument,
         data.source() + " has " + std::to_string(folders) + " class folders but the model has " +
             std::to_string(classes) +
             " classes: give a class-index file mapping folder names to the model's classes");
  for (int i = 0; i < data.size(); ++i) {
    const int label = data.label(i);
    if (label < classes) continue;
    if (data.is_idx())
      fail(ErrorCode::invalid_argument, data.item_name(i) + " in " + data.source() + " has label " +
                                            std::to_string(label) + " but the model has " +
                                            std::to_string(classes) + " classes");
    fail(ErrorCode::invalid_argument,
         "class folder '" + data.class_names()[static_cast<size_t>(label)] + "' has index " +
             std::to_string(label) + " in " + data.class_index() + " but the model has " +
             std::to_string(classes) + " classes");
  }
}

std::vector<float> run_outputs(const std::shared_ptr<const VitModel> &model, const Dataset &data,
                               const std::vector<int> &items, const EvalOptions &options,
                               ProgressBar *progress, double *seconds) {
  const VitConfig &c = model->config();
  const int64_t k = c.n_outputs();
  const int n = static_cast<int>(items.size());
  const int batch = std::max(1, options.batch);
  const int batches = (n + batch - 1) / batch;
  const int threads = options.threads > 0 ? options.threads : omp_get_max_threads();
  const int sessions =
      std::clamp(options.sessions > 0 ? options.sessions : threads, 1, std::max(1, batches));
  std::vector<float> out(static_cast<size_t>(n) * k);

  std::atomic<int> next{0};
  std::atomic<bool> stop{false};
  std::exception_ptr error;
  std::mutex error_mutex;
  // Batches are fixed slices of `items` whichever worker takes them, so the outputs do not
  // depend on the scheduling (a forward's numbers can depend on its batch composition).
  auto worker = [&] {
    try {
      SessionOptions so;
      so.max_batch = batch;
      so.n_threads = std::max(1, threads / sessions);
      VitSession session(model, so);
      std::vector<float> input(static_cast<size_t>(batch) * c.input_size());
      for (int b; !stop && (b = next++) < batches;) {
        const int start = b * batch, count = std::min(batch, n - start);
        for (int i = 0; i < count; ++i)
          preprocess_image(data.image(items[static_cast<size_t>(start + i)], c.in_chans),
                           model->preprocess(), input.data() + i * c.input_size());
        session.run(input.data(), count, out.data() + static_cast<size_t>(start) * k);
        if (progress) progress->advance(count, n);
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
      stop = true;
    }
  };
  const auto t0 = std::chrono::steady_clock::now();
  if (sessions == 1) {
    worker();
  } else {
    std::vector<std::thread> pool;
    for (int s = 0; s < sessions; ++s) pool.emplace_back(worker);
    for (auto &t : pool) t.join();
  }
  if (error) std::rethrow_exception(error);
  if (seconds)
    *seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

Agreement agreement(const float *a, const float *b, int n, int k) {
  Agreement r;
  r.n = n;
  r.cosine_min = n > 0 ? 2.0 : 0.0;
  for (int i = 0; i < n; ++i) {
    const float *x = a + static_cast<size_t>(i) * k, *y = b + static_cast<size_t>(i) * k;
    double xy = 0, xx = 0, yy = 0;
    for (int j = 0; j < k; ++j) {
      xy += double(x[j]) * y[j];
      xx += double(x[j]) * x[j];
      yy += double(y[j]) * y[j];
    }
    // Two zero vectors agree; one zero vector does not (cosine 0).
    const double cos = xx > 0 && yy > 0 ? xy / std::sqrt(xx * yy) : (xx == yy ? 1.0 : 0.0);
    r.cosine_mean += cos / n;
    if (cos < r.cosine_min) {
      r.cosine_min = cos;
      r.cosine_min_row = i;
    }
    r.top1_same += top_k(x, k, 1)[0] == top_k(y, k, 1)[0];
  }
  return r;
}

EvalResult score(const float *outputs, const std::vector<int> &labels, int classes) {
  EvalResult r;
  r.n = static_cast<int>(labels.size());
  r.class_n.assign(static_cast<size_t>(classes), 0);
  r.class_top1 = r.class_top5 = r.class_n;
  for (int i = 0; i < r.n; ++i) {
    const int label = labels[static_cast<size_t>(i)];
    const auto best = top_k(outputs + static_cast<size_t>(i) * classes, classes, 5);
    const bool hit1 = best[0] == label;
    const bool hit5 = std::find(best.begin(), best.end(), label) != best.end();
    r.top1 += hit1;
    r.top5 += hit5;
    r.class_n[static_cast<size_t>(label)]++;
    r.class_top1[static_cast<size_t>(label)] += hit1;
    r.class_top5[static_cast<size_t>(label)] += hit5;
  }
  return r;
}

EvalResult evaluate(const std::shared_ptr<const VitModel> &model, const Dataset &data,
                    const std::vector<int> &items, const EvalOptions &options,
                    ProgressBar *progress) {
  check_labels(data, *model);
  double seconds = 0;
  std::vector<float> outputs = run_outputs(model, data, items, options, progress, &seconds);
  std::vector<int> labels;
  for (int item : items) labels.push_back(data.label(item));
  EvalResult r = score(outputs.data(), labels, model->config().num_classes);
  r.seconds = seconds;
  if (options.keep_outputs) r.outputs = std::move(outputs);
  return r;
}

std::string class_name(const VitModel &model, const Dataset &data, int k) {
  if (k < static_cast<int>(model.labels().size()) && !model.labels()[k].empty())
    return model.labels()[k];
  if (k < static_cast<int>(data.class_names().size()) && !data.class_names()[k].empty())
    return data.class_names()[k];
  return std::to_string(k);
}

}  // namespace vqm::app
