// Classifies images with a .vqm model from C++ and prints the top-5 classes of each.
// Usage: classify_cpp MODEL.vqm IMAGE...
// vqm's API is C; the few lines of `vqmpp` below are the RAII wrapper a C++ application would
// write once: handles freed by destructors, failures thrown as exceptions with the library's
// message.
#include <vqm/vqm.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

namespace vqmpp {

struct Error : std::runtime_error {
  Error(vqm_status s, const char *message) : std::runtime_error(message), status(s) {}
  vqm_status status;
};

inline void check(vqm_status s) {
  if (s != VQM_OK) throw Error(s, vqm_last_error());
}

class Model {
 public:
  explicit Model(const std::string &path) {
    vqm_model *m = nullptr;
    check(vqm_model_load(path.c_str(), nullptr, &m));
    handle_.reset(m);
  }
  int n_classes() const { return vqm_model_n_classes(get()); }
  std::string label(int i) const { return vqm_model_label(get(), i); }
  const vqm_model *get() const { return handle_.get(); }

 private:
  struct Free {
    void operator()(vqm_model *m) const { vqm_model_free(m); }
  };
  std::unique_ptr<vqm_model, Free> handle_;
};

// One thread's state; the model may be shared by sessions in other threads.
class Session {
 public:
  explicit Session(const Model &model, int n_threads = 0) : n_classes_(model.n_classes()) {
    vqm_session_params p = vqm_session_default_params();
    p.n_threads = n_threads;
    vqm_session *s = nullptr;
    check(vqm_session_create(model.get(), &p, &s));
    handle_.reset(s);
  }
  std::vector<float> run_image_file(const std::string &path) {
    std::vector<float> logits(static_cast<size_t>(n_classes_));
    check(vqm_session_run_image_file(handle_.get(), path.c_str(), logits.data(), logits.size()));
    return logits;
  }
  // `nchw`: n preprocessed images; returns n * n_classes logits.
  std::vector<float> run(const float *nchw, int n) {
    std::vector<float> logits(static_cast<size_t>(n) * static_cast<size_t>(n_classes_));
    check(vqm_session_run(handle_.get(), nchw, n, logits.data(), logits.size()));
    return logits;
  }

 private:
  struct Free {
    void operator()(vqm_session *s) const { vqm_session_free(s); }
  };
  std::unique_ptr<vqm_session, Free> handle_;
  int n_classes_;
};

}  // namespace vqmpp

int main(int argc, char **argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s MODEL.vqm IMAGE...\n", argv[0]);
    return 2;
  }
  try {
    const vqmpp::Model model(argv[1]);
    vqmpp::Session session(model);
    int failures = 0;
    for (int i = 2; i < argc; ++i) {
      std::vector<float> logits;
      try {
        logits = session.run_image_file(argv[i]);
      } catch (const vqmpp::Error &e) {  // an unreadable image: report it, go on
        std::fprintf(stderr, "classify_cpp: error: %s\n", e.what());
        ++failures;
        continue;
      }
      const float max = *std::max_element(logits.begin(), logits.end());
      double sum = 0;
      for (float l : logits) sum += std::exp(double(l) - max);
      std::vector<int> order(logits.size());
      std::iota(order.begin(), order.end(), 0);
      const size_t k = std::min<size_t>(5, order.size());
      std::partial_sort(order.begin(), order.begin() + k, order.end(),
                        [&](int a, int b) { return logits[a] > logits[b]; });
      std::printf("%s\n", argv[i]);
      for (size_t r = 0; r < k; ++r)
        std::printf("  %6.2f%%  %4d  %s\n", 100.0 * std::exp(double(logits[order[r]]) - max) / sum,
                    order[r], model.label(order[r]).c_str());
    }
    return failures ? 1 : 0;
  } catch (const vqmpp::Error &e) {
    std::fprintf(stderr, "classify_cpp: error: %s\n", e.what());
    return 1;
  }
}
