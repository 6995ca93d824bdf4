// Seed inputs of the fuzz targets, built at run time from tests/data and tiny synthetic models
// (so the repository holds no corpus): small valid files of every kind each target reads.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace vqm::fuzz {

struct Seed {
  std::string target;  // a name from targets()
  std::string name;    // file name when written out
  std::vector<uint8_t> bytes;
};

// Every seed is a valid input: its target must accept it (tests/robust checks that).
std::vector<Seed> make_seeds(const std::string &data_dir, const std::string &fmnist_dir);

}  // namespace vqm::fuzz
