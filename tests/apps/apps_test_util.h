// Shared by the tests of apps/: the Fashion-MNIST model as a .vqm file, the first t10k images as
// an image folder (PNG, one folder per class), and running a built tool.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace vqm::test {

// Converts the shipped checkpoint into dir/model.vqm; returns its path.
std::string write_fmnist_model(const std::string &dir);

// Writes the first `n` t10k images as root/<class>/<index, 5 digits>.png and root/../classes.txt,
// the class-index file in model order; returns that file's path. Class folders are the model's
// labels with '/' and ' ' replaced by '_' (sorted folder order is then NOT the class order), or
// with `digit_names` the class numbers 0..9 (sorted order is the class order).
std::string write_fmnist_folder(const std::string &root, int n, bool digit_names = false);

struct ToolRun {
  int status = -1;
  std::string out, err;
};
// Runs a shell command line (without redirections of its own), capturing stdout and stderr.
ToolRun run_shell(const std::string &command_line);
// run_shell of build/bin/<command line>.
ToolRun run_tool(const std::string &command_line);
// The JSON object a tool printed on stdout; a gtest failure when it failed or printed no JSON.
nlohmann::json parse_json(const ToolRun &r);

}  // namespace vqm::test
