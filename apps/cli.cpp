#include "apps/cli.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <sstream>

#include "runtime/io/error.h"

namespace vqm::cli {

Args::Args(std::string tool, std::string usage, std::vector<Option> options, std::string about)
    : tool_(std::move(tool)),
      usage_(std::move(usage)),
      about_(std::move(about)),
      options_(std::move(options)) {
  options_.push_back({"--help", "", "show this help and exit"});
}

namespace {

// Words of `text` in lines of at most `width` characters, every line but the first indented by
// `indent` spaces (a word longer than a line gets a line of its own).
std::string wrap(const std::string &text, size_t width, size_t indent) {
  std::istringstream words(text);
  std::string out, line, word;
  while (words >> word) {
    if (!line.empty() && line.size() + 1 + word.size() > width) {
      out += line + "\n" + std::string(indent, ' ');
      line.clear();
    }
    line += (line.empty() ? "" : " ") + word;
  }
  return out + line;
}

constexpr size_t kHelpWidth = 100, kOptionColumn = 28;

}  // namespace

std::string Args::help_text() const {
  std::ostringstream s;
  s << "usage: " << tool_ << " " << usage_ << "\n\n";
  // Paragraphs are wrapped; lines that start with a space (examples) are kept as they are.
  std::istringstream about(about_);
  for (std::string line; std::getline(about, line);)
    s << (line.empty() || line[0] == ' ' ? line : wrap(line, kHelpWidth, 0)) << "\n";
  if (!about_.empty()) s << "\n";
  s << "options:\n";
  for (const auto &o : options_) {
    std::string left = "  " + o.name + (o.meta.empty() ? "" : " " + o.meta);
    if (left.size() < kOptionColumn)
      left.resize(kOptionColumn, ' ');
    else
      left += "\n" + std::string(kOptionColumn, ' ');
    s << left << wrap(o.help, kHelpWidth - kOptionColumn, kOptionColumn) << "\n";
  }
  s << "\nexit status: 0 on success, 1 on errors (one line on stderr naming the problem), 2 on "
       "bad usage\n";
  return s.str();
}

void Args::parse(int argc, char **argv) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::cout << help_text();
      std::exit(0);
    }
    if (a.size() > 1 && a[0] == '-' && a != "-") {
      std::string value;
      bool inline_value = false;
      if (auto eq = a.find('='); eq != std::string::npos) {
        value = a.substr(eq + 1);
        a = a.substr(0, eq);
        inline_value = true;
      }
      const Option *opt = nullptr;
      for (const auto &o : options_)
        if (o.name == a) opt = &o;
      if (!opt) throw UsageError("unknown option '" + a + "' (see --help)");
      if (opt->meta.empty()) {
        if (inline_value) throw UsageError("option " + a + " takes no value");
        values_[a] = "1";
      } else {
        if (!inline_value) {
          if (i + 1 >= argc) throw UsageError("option " + a + " needs a value (" + opt->meta + ")");
          value = argv[++i];
        }
        values_[a] = value;
      }
    } else {
      positional_.push_back(a);
    }
  }
}

std::string Args::get(const std::string &name, const std::string &def) const {
  auto it = values_.find(name);
  return it == values_.end() ? def : it->second;
}

int Args::get_int(const std::string &name, int def, int lo, int hi) const {
  if (!has(name)) return def;
  const std::string &s = values_.at(name);
  char *end = nullptr;
  errno = 0;
  const long v = std::strtol(s.c_str(), &end, 10);
  if (s.empty() || *end || errno || v < lo || v > hi)
    throw UsageError(name + " expects an integer in [" + std::to_string(lo) + ", " +
                     std::to_string(hi) + "], got '" + s + "'");
  return static_cast<int>(v);
}

double Args::get_double(const std::string &name, double def, double lo, double hi) const {
  if (!has(name)) return def;
  const std::string &s = values_.at(name);
  char *end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end || !(v >= lo && v <= hi))
    throw UsageError(name + " expects a number in [" + std::to_string(lo) + ", " +
                     std::to_string(hi) + "], got '" + s + "'");
  return v;
}

std::vector<float> parse_floats(const std::string &s, const std::string &what) {
  std::vector<float> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) {
    char *end = nullptr;
    const float v = std::strtof(item.c_str(), &end);
    if (item.empty() || *end)
      throw UsageError(what + " expects comma-separated numbers, got '" + s + "'");
    out.push_back(v);
  }
  if (out.empty()) throw UsageError(what + " expects comma-separated numbers, got '" + s + "'");
  return out;
}

int run_tool(const char *tool, const std::function<int()> &body) {
  try {
    return body();
  } catch (const UsageError &e) {
    std::fprintf(stderr, "%s: error: %s\n", tool, e.what());
    return 2;
  } catch (const Error &e) {
    std::fprintf(stderr, "%s: error: %s\n", tool, e.what());
    return 1;
  } catch (const std::bad_alloc &) {
    std::fprintf(stderr, "%s: error: out of memory\n", tool);
    return 1;
  } catch (const std::exception &e) {
    std::fprintf(stderr, "%s: error: %s\n", tool, e.what());
    return 1;
  }
}

}  // namespace vqm::cli
