// Writes the fuzz seeds (fuzz_seeds.h) as files: OUT_DIR/<target>/<name>.
// Usage: fuzz_seeds OUT_DIR
#include <cstdio>
#include <filesystem>

#include "fuzz_seeds.h"
#include "test_util.h"

int main(int argc, char **argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
    return 2;
  }
  int n = 0;
  for (const auto &s : vqm::fuzz::make_seeds(VQM_TEST_DATA_DIR, VQM_FMNIST_DIR)) {
    const auto dir = std::filesystem::path(argv[1]) / s.target;
    std::filesystem::create_directories(dir);
    vqm::test::write_bytes((dir / s.name).string(), s.bytes);
    ++n;
  }
  std::printf("fuzz_seeds: %d seeds in %s\n", n, argv[1]);
  return 0;
}
