// Small command-line helpers shared by the vqm tools: a strict flag parser (unknown flags are
// errors), number parsing with range checks, and a main() wrapper that turns every error into
// one line on stderr and a non-zero exit code.
#pragma once
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace vqm::cli {

struct Option {
  std::string name;  // "--model"
  std::string meta;  // "FILE" for options that take a value, "" for switches
  std::string help;
};

class Args {
 public:
  // `about`: paragraphs printed between the usage line and the options (what the tool does,
  // where its output goes, examples).
  Args(std::string tool, std::string usage, std::vector<Option> options, std::string about = "");
  // Throws UsageError on unknown flags or missing values. Handles --help (prints, exits 0).
  void parse(int argc, char **argv);

  bool has(const std::string &name) const { return values_.count(name) > 0; }
  std::string get(const std::string &name, const std::string &def = "") const;
  int get_int(const std::string &name, int def, int lo, int hi) const;
  double get_double(const std::string &name, double def, double lo, double hi) const;
  const std::vector<std::string> &positional() const { return positional_; }
  std::string help_text() const;

 private:
  std::string tool_, usage_, about_;
  std::vector<Option> options_;
  std::map<std::string, std::string> values_;
  std::vector<std::string> positional_;
};

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Runs body; prints "TOOL: error: message" and returns 2 for usage errors, 1 for all others.
int run_tool(const char *tool, const std::function<int()> &body);

// Parses "a,b,c" into floats; throws UsageError naming `what` on junk.
std::vector<float> parse_floats(const std::string &s, const std::string &what);

}  // namespace vqm::cli
