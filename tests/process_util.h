// Running the vqm tools (or a shell) from tests: a child process with its stdout and stderr
// captured. Shared by tests/robust and tests/apps (run_shell).
#pragma once
#include <string>
#include <vector>

namespace vqm::test {

struct ProcessResult {
  int exit_code = -1;  // -1 when killed by a signal
  int signal = 0;
  std::string out, err;
};

// Path of a tool in the build tree (VQM_BIN_DIR).
std::string tool(const std::string &name);
// Runs argv[0] (a path) with argv, the environment plus `env` ("NAME=value"), stdin from
// /dev/null; waits for it.
ProcessResult run_process(const std::vector<std::string> &argv,
                          const std::vector<std::string> &env = {});
// argv/env as the NULL-terminated arrays execve takes (pointing into the given strings).
std::vector<char *> c_strings(const std::vector<std::string> &v);
// The current environment with `extra` ("NAME=value") added or replacing same-named entries.
std::vector<std::string> environment_plus(const std::vector<std::string> &extra);

}  // namespace vqm::test
