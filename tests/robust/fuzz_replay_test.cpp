// The fuzz targets in every build (gcc Release, clang ASan+UBSan, ...): the seeds must be
// accepted (a harness that refuses its own seeds fuzzes nothing), every input a fuzzer once
// crashed on (tests/fuzz/regressions/<target>/) must now be handled, and a small deterministic
// mutation pass gives the builds without libFuzzer some of the same coverage.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <random>

#include "fuzz/fuzz_seeds.h"
#include "fuzz/fuzz_targets.h"
#include "test_util.h"

namespace vqm::fuzz {
namespace {

const Target &target(const std::string &name) {
  for (const auto &t : targets())
    if (name == t.name) return t;
  throw std::runtime_error("no fuzz target " + name);
}

const std::vector<Seed> &seeds() {
  static const std::vector<Seed> s = make_seeds(VQM_TEST_DATA_DIR, VQM_FMNIST_DIR);
  return s;
}

TEST(FuzzSeeds, EveryTargetHasSeedsAndAcceptsThem) {
  std::map<std::string, int> per_target;
  for (const auto &s : seeds()) {
    EXPECT_EQ(target(s.target).run(s.bytes.data(), s.bytes.size()), Outcome::accepted)
        << s.target << "/" << s.name;
    ++per_target[s.target];
  }
  for (const auto &t : targets()) EXPECT_GE(per_target[t.name], 3) << t.name;
}

// Inputs saved from fuzzer crashes, each fixed since; README.md there says what each was.
TEST(FuzzRegressions, SavedCrashInputsAreHandled) {
  const std::filesystem::path root =
      std::filesystem::path(VQM_TEST_DATA_DIR) / "../fuzz/regressions";
  int replayed = 0;
  for (const auto &t : targets()) {
    const auto dir = root / t.name;
    if (!std::filesystem::is_directory(dir)) continue;
    for (const auto &entry : std::filesystem::directory_iterator(dir)) {
      SCOPED_TRACE(entry.path().string());
      const std::vector<uint8_t> bytes = test::read_bytes(entry.path().string());
      t.run(bytes.data(), bytes.size());  // a crash or sanitizer report fails the test binary
      ++replayed;
    }
  }
  std::printf("[ replayed ] %d saved crash inputs\n", replayed);
  EXPECT_GT(replayed, 0) << "no inputs under " << root;
}

// Bit flips, interesting bytes, truncations, duplicated and deleted spans: the mutations
// libFuzzer starts from, seeded, so every build runs the same inputs.
std::vector<uint8_t> mutate(std::vector<uint8_t> b, std::mt19937 &rng) {
  if (b.empty()) return b;
  auto pos = [&] { return std::uniform_int_distribution<size_t>(0, b.size() - 1)(rng); };
  const int rounds = 1 + static_cast<int>(rng() % 4);
  for (int r = 0; r < rounds && !b.empty(); ++r) {
    static const uint8_t kInteresting[] = {0, 1, 0x7f, 0x80, 0xff, '"', '{', '[', '9', '-'};
    switch (rng() % 6) {
      case 0:
        b[pos()] ^= static_cast<uint8_t>(1u << (rng() % 8));
        break;
      case 1:
        b[pos()] = kInteresting[rng() % sizeof kInteresting];
        break;
      case 2:
        b.resize(pos());
        break;
      case 3: {
        const size_t at = pos(), len = std::min<size_t>(b.size() - at, 1 + rng() % 16);
        const std::vector<uint8_t> span(b.begin() + at, b.begin() + at + len);
        b.insert(b.begin() + pos(), span.begin(), span.end());
        break;
      }
      case 4: {
        const size_t at = pos();
        b.erase(b.begin() + at, b.begin() + std::min(b.size(), at + 1 + rng() % 8));
        break;
      }
      default:  // a multi-byte number field set to an extreme
        for (size_t at = pos(), i = 0; i < 4 && at + i < b.size(); ++i) b[at + i] = 0xff;
    }
  }
  return b;
}

TEST(FuzzSeeds, MutantsAreAcceptedOrRefusedNeverCrash) {
  constexpr int kPerSeed = 40;
  std::mt19937 rng(20240601);
  std::map<std::string, std::pair<int, int>> counts;  // accepted, rejected
  for (const auto &s : seeds()) {
    for (int i = 0; i < kPerSeed; ++i) {
      const std::vector<uint8_t> m = mutate(s.bytes, rng);
      const Outcome o = target(s.target).run(m.data(), m.size());
      (o == Outcome::accepted ? counts[s.target].first : counts[s.target].second)++;
    }
  }
  for (const auto &[name, c] : counts) {
    std::printf("[ mutants  ] %-12s %4d accepted, %4d refused\n", name.c_str(), c.first, c.second);
    EXPECT_GT(c.second, 0) << name << ": no mutant was refused, the target checks nothing";
  }
}

}  // namespace
}  // namespace vqm::fuzz
