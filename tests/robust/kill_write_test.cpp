// SIGKILL in the middle of writing the output. vit-convert and vit-quantize write through
// write_file_atomic: a temporary file next to the target, fsync, rename over the target. So
// whenever the process dies, the target is absent or the previous complete file, never a torn
// one.
//
// The moment of the kill is chosen exactly rather than by a timer: the tool runs under ptrace
// with a seccomp filter that stops it at write, fsync and rename calls (nothing else, so it runs
// at full speed), and the test kills it at one step of the output write:
//   opened   - the first write() to the temporary, before any byte of it
//   half     - that write() is shortened to half its length (its count register is edited, as a
//              short write by the kernel would be) and the kill comes at the next write(), the
//              temporary holding exactly half the bytes
//   written  - fsync(): every byte written, none durable
//   renaming - rename(): the temporary complete, the target untouched
//   renamed  - rename() returned: the target is the new complete file
// Earlier kills leave nothing to check (the target is not opened before); later ones find the
// new file in place. x86-64 (system call numbers, register names).
#include <gtest/gtest.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstddef>
#include <filesystem>

#include "models/convert.h"
#include "process_util.h"
#include "runtime/io/format.h"
#include "test_util.h"

namespace vqm::test {
namespace {

namespace fs = std::filesystem;

enum class Step { opened, half, written, renaming, renamed };

struct TraceResult {
  bool killed = false;  // false: the tool exited by itself first
  int exit_code = -1;
};

bool is_temporary_of(pid_t pid, unsigned long long fd, const fs::path &target) {
  std::error_code ec;
  const fs::path p =
      fs::read_symlink("/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd), ec);
  if (ec) return false;
  const std::string prefix = "." + target.filename().string() + ".tmp.";
  return p.parent_path() == target.parent_path() && p.filename().string().rfind(prefix, 0) == 0;
}

bool is_rename(unsigned long long nr) {
  return nr == SYS_rename || nr == SYS_renameat || nr == SYS_renameat2;
}

// In the child, before exec: stop (SECCOMP_RET_TRACE) at the system calls of an output write,
// let every other one through.
void install_write_filter() {
  constexpr unsigned kWatched[] = {SYS_write,  SYS_fsync,    SYS_fdatasync,
                                   SYS_rename, SYS_renameat, SYS_renameat2};
  constexpr unsigned n = sizeof kWatched / sizeof kWatched[0];
  std::vector<sock_filter> f = {BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
                                BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
                                BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
                                BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr))};
  for (unsigned i = 0; i < n; ++i)
    f.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kWatched[i], static_cast<uint8_t>(n - i), 0));
  f.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  f.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRACE));
  sock_fprog prog{static_cast<unsigned short>(f.size()), f.data()};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
      prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
    _exit(126);
}

// The children's environment: LSan cannot run under ptrace; with one OpenMP thread no worker
// thread exists (only the main thread is traced, and the filter applies to all).
const std::vector<std::string> kChildEnv = {"ASAN_OPTIONS=detect_leaks=0:abort_on_error=1",
                                            "OMP_NUM_THREADS=1"};

// Runs argv under ptrace and kills it at `step` of its write to `target`.
TraceResult run_traced(const std::vector<std::string> &argv, const fs::path &target, Step step) {
  const std::vector<std::string> env = environment_plus(kChildEnv);
  std::vector<char *> args = c_strings(argv), envp = c_strings(env);
  const pid_t pid = fork();
  if (pid == 0) {
    ptrace(PTRACE_TRACEME, 0, nullptr, nullptr);
    raise(SIGSTOP);
    install_write_filter();
    execve(args[0], args.data(), envp.data());
    _exit(127);
  }
  TraceResult r;
  int status = 0;
  waitpid(pid, &status, 0);  // the SIGSTOP
  EXPECT_EQ(ptrace(PTRACE_SETOPTIONS, pid, nullptr,
                   PTRACE_O_TRACESECCOMP | PTRACE_O_TRACESYSGOOD | PTRACE_O_EXITKILL |
                       PTRACE_O_TRACEEXEC),
            0)
      << "ptrace: " << std::strerror(errno);
  int temp_writes = 0, deliver = 0;
  auto kill_now = [&] {
    ::kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    r.killed = true;
    return r;
  };
  for (;;) {
    ptrace(PTRACE_CONT, pid, nullptr, deliver);
    deliver = 0;
    if (waitpid(pid, &status, 0) < 0) return r;
    if (WIFEXITED(status) || WIFSIGNALED(status)) {
      r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      return r;
    }
    if (status >> 8 == (SIGTRAP | (PTRACE_EVENT_EXEC << 8))) continue;
    if (status >> 8 != (SIGTRAP | (PTRACE_EVENT_SECCOMP << 8))) {
      deliver = WSTOPSIG(status);  // the tool's own signals
      continue;
    }
    user_regs_struct regs;
    ptrace(PTRACE_GETREGS, pid, nullptr, &regs);
    const unsigned long long nr = regs.orig_rax;
    if (is_rename(nr)) {
      if (step == Step::renaming) return kill_now();
      if (step != Step::renamed) continue;
      // Let the rename happen: run to this call's exit stop.
      do {
        ptrace(PTRACE_SYSCALL, pid, nullptr, nullptr);
        waitpid(pid, &status, 0);
        ptrace(PTRACE_GETREGS, pid, nullptr, &regs);
      } while (WIFSTOPPED(status) && (WSTOPSIG(status) != (SIGTRAP | 0x80) ||
                                      static_cast<long long>(regs.rax) == -ENOSYS));
      return kill_now();
    }
    if (!is_temporary_of(pid, regs.rdi, target)) continue;
    if (nr != SYS_write) {
      if (step == Step::written) return kill_now();
      continue;
    }
    ++temp_writes;
    if (step == Step::opened || (step == Step::half && temp_writes == 2)) return kill_now();
    if (step == Step::half) {
      regs.rdx /= 2;
      ptrace(PTRACE_SETREGS, pid, nullptr, &regs);
    }
  }
}

std::vector<fs::path> temporaries(const fs::path &target) {
  std::vector<fs::path> out;
  const std::string prefix = "." + target.filename().string() + ".tmp.";
  for (const auto &e : fs::directory_iterator(target.parent_path()))
    if (e.path().filename().string().rfind(prefix, 0) == 0) out.push_back(e.path());
  return out;
}

struct Case {
  Step step;
  bool has_previous;
  const char *name;
};
const std::vector<Case> kEveryStep = {{Step::opened, true, "opened"},
                                      {Step::half, true, "half"},
                                      {Step::half, false, "half, no previous file"},
                                      {Step::written, true, "written"},
                                      {Step::renaming, true, "renaming"},
                                      {Step::renaming, false, "renaming, no previous file"},
                                      {Step::renamed, true, "renamed"}};

// Runs the kill plan for one tool. `args` writes `target`; `expected` is what a complete run
// writes there.
void kill_at_steps(const std::vector<std::string> &args, const fs::path &target,
                   const std::vector<uint8_t> &expected, const std::vector<Case> &cases) {
  const std::vector<uint8_t> previous = {'p', 'r', 'e', 'v', 'i', 'o', 'u', 's', '\n'};
  for (const Case &c : cases) {
    SCOPED_TRACE(c.name);
    for (const auto &t : temporaries(target)) fs::remove(t);
    fs::remove(target);
    if (c.has_previous) write_bytes(target.string(), previous);
    const TraceResult r = run_traced(args, target, c.step);
    ASSERT_TRUE(r.killed) << "the tool exited (" << r.exit_code << ") before the kill point";
    const auto temps = temporaries(target);
    if (c.step == Step::renamed) {
      EXPECT_EQ(read_bytes(target.string()), expected);
      EXPECT_TRUE(temps.empty());
      continue;
    }
    if (c.has_previous) {
      EXPECT_EQ(read_bytes(target.string()), previous);
    } else {
      EXPECT_FALSE(fs::exists(target));
    }
    // The kill did land inside the write: the temporary is there, as full as the step says.
    ASSERT_EQ(temps.size(), 1u);
    const uint64_t want = c.step == Step::opened ? 0
                          : c.step == Step::half ? expected.size() / 2
                                                 : expected.size();
    EXPECT_EQ(fs::file_size(temps[0]), want);
  }
  // A temporary left by a killed run does not get in the way of the next run.
  if (temporaries(target).empty()) {
    ASSERT_TRUE(run_traced(args, target, Step::half).killed);
  }
  ASSERT_EQ(temporaries(target).size(), 1u);
  fs::remove(target);
  const ProcessResult ok = run_process(args, kChildEnv);
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_EQ(read_bytes(target.string()), expected);
}

TEST(KillMidWrite, VitConvertLeavesNoTornFile) {
  const fs::path dir = fs::canonical(scratch_dir());  // /proc/PID/fd shows canonical paths
  const fs::path target = dir / "out.vqm";
  const std::vector<std::string> args = {tool("vit-convert"),
                                         data_path("models/fmnist_deit_tiny.safetensors"), "-o",
                                         target.string(), "--quiet"};
  const ProcessResult first = run_process(args, kChildEnv);
  ASSERT_EQ(first.exit_code, 0) << first.err;
  const std::vector<uint8_t> expected = read_bytes(target.string());
  ASSERT_GT(expected.size(), 1000000u);
  kill_at_steps(args, target, expected, kEveryStep);
}

// The same writer as vit-convert's, so two steps show that vit-quantize goes through it.
TEST(KillMidWrite, VitQuantizeLeavesNoTornFile) {
  const fs::path dir = fs::canonical(scratch_dir());  // /proc/PID/fd shows canonical paths
  const fs::path fp32 = dir / "fp32.vqm", target = dir / "w8a8.vqm", calib = dir / "calib";
  const auto st = SafetensorsFile::from_file(data_path("models/fmnist_deit_tiny.safetensors"));
  convert_timm(st, {}).write(fp32.string());
  fs::create_directories(calib);
  for (const char *png : {"fmnist_t10k_0_ankle_boot.png", "fmnist_t10k_1_pullover.png"})
    fs::copy_file(data_path(std::string("images/") + png), calib / png);
  // The cheapest quantization (min/max on 2 images): the subject is the write, not the search.
  const std::vector<std::string> args = {
      tool("vit-quantize"), "--model", fp32.string(), "--calib", calib.string(),
      "--n-calib",          "2",       "--method",    "minmax",  "-o",
      target.string(),      "--quiet"};
  const ProcessResult first = run_process(args, kChildEnv);
  ASSERT_EQ(first.exit_code, 0) << first.err;
  const std::vector<uint8_t> expected = read_bytes(target.string());
  ASSERT_GT(expected.size(), 100000u);
  kill_at_steps(
      args, target, expected,
      {{Step::half, true, "half"}, {Step::renaming, false, "renaming, no previous file"}});
}

}  // namespace
}  // namespace vqm::test
