#include "examples/cli.h"

#include <omp.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <iostream>

#include "core/error.h"

namespace dl::cli {

ArgParser::ArgParser(std::string command, std::string summary)
    : command_(std::move(command)), summary_(std::move(summary)) {}

ArgParser& ArgParser::option(const std::string& name, const std::string& help, const std::string& def,
                             bool required) {
  opts_.push_back({name, help, def, false, required, false});
  return *this;
}
ArgParser& ArgParser::flag(const std::string& name, const std::string& help) {
  opts_.push_back({name, help, "", true, false, false});
  return *this;
}
ArgParser& ArgParser::positional(const std::string& name, const std::string& help, bool required) {
  opts_.push_back({name, help, "", false, required, true});
  return *this;
}

const ArgParser::Opt* ArgParser::find(const std::string& name) const {
  for (const auto& o : opts_)
    if (o.name == name) return &o;
  return nullptr;
}

bool ArgParser::parse(int argc, char** argv) {
  size_t next_pos = 0;
  std::vector<const Opt*> pos;
  for (const auto& o : opts_)
    if (o.positional) pos.push_back(&o);
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      print_help();
      return false;
    }
    if (a.rfind("--", 0) == 0) {
      std::string name = a.substr(2), value;
      bool has_eq = false;
      if (auto eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
        has_eq = true;
      }
      const Opt* o = find(name);
      DL_CHECK(o && !o->positional, "deeperlab " << command_ << ": unknown option --" << name
                                                 << " (see deeperlab " << command_ << " --help)");
      if (o->is_flag) {
        values_[name] = "1";
      } else {
        if (!has_eq) {
          DL_CHECK(i + 1 < argc, "deeperlab " << command_ << ": option --" << name << " needs a value");
          value = argv[++i];
        }
        values_[name] = value;
      }
    } else {
      DL_CHECK(next_pos < pos.size(), "deeperlab " << command_ << ": unexpected argument '" << a << "'");
      values_[pos[next_pos++]->name] = a;
    }
  }
  for (const auto& o : opts_)
    DL_CHECK(!o.required || values_.count(o.name),
             "deeperlab " << command_ << ": missing " << (o.positional ? "argument " : "option --") << o.name
                          << " (see deeperlab " << command_ << " --help)");
  return true;
}

std::string ArgParser::get(const std::string& name) const {
  auto it = values_.find(name);
  if (it != values_.end()) return it->second;
  const Opt* o = find(name);
  DL_CHECK(o, "internal: option " << name << " was never declared");
  return o->def;
}
bool ArgParser::has(const std::string& name) const { return values_.count(name) > 0; }
int ArgParser::get_int(const std::string& name) const {
  std::string v = get(name);
  char* end = nullptr;
  long r = std::strtol(v.c_str(), &end, 10);
  DL_CHECK(!v.empty() && end && *end == 0, "deeperlab " << command_ << ": --" << name << " expects an integer, got '"
                                                        << v << "'");
  return static_cast<int>(r);
}
double ArgParser::get_double(const std::string& name) const {
  std::string v = get(name);
  char* end = nullptr;
  double r = std::strtod(v.c_str(), &end);
  DL_CHECK(!v.empty() && end && *end == 0, "deeperlab " << command_ << ": --" << name << " expects a number, got '"
                                                        << v << "'");
  return r;
}
bool ArgParser::get_flag(const std::string& name) const { return values_.count(name) > 0; }

void ArgParser::print_help() const {
  std::cout << "usage: deeperlab " << command_;
  for (const auto& o : opts_)
    if (o.positional) std::cout << (o.required ? " " : " [") << o.name << (o.required ? "" : "]");
  std::cout << " [options]\n\n" << summary_ << "\n\noptions:\n";
  for (const auto& o : opts_) {
    std::string lhs = o.positional ? o.name : "--" + o.name + (o.is_flag ? "" : " V");
    std::cout << "  " << lhs;
    for (size_t k = lhs.size(); k < 26; ++k) std::cout << ' ';
    std::cout << " " << o.help;
    if (!o.def.empty()) std::cout << " (default: " << o.def << ")";
    if (o.required) std::cout << " (required)";
    std::cout << "\n";
  }
  std::cout << "  --help                     this text\n";
}

Progress::Progress(std::string label, int64_t total, std::string unit)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total), tty_(isatty(2)) {
  start_ = last_ = std::chrono::steady_clock::now();
}

static std::string fmt_time(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  char buf[32];
  int t = static_cast<int>(s + 0.5);
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%d:%02d:%02d", t / 3600, (t / 60) % 60, t % 60);
  else
    std::snprintf(buf, sizeof buf, "%d:%02d", t / 60, t % 60);
  return buf;
}

void Progress::update(int64_t done, const std::string& extra) {
  auto now = std::chrono::steady_clock::now();
  const bool last = done >= total_;
  // Redraw at most 10x/s on a terminal, and about every 5 s when logging to a file.
  const double min_gap = tty_ ? 0.1 : 5.0;
  if (!last && std::chrono::duration<double>(now - last_).count() < min_gap) return;
  last_ = now;
  drawn_ = done;
  const double el = std::chrono::duration<double>(now - start_).count();
  const double rate = el > 0 ? done / el : 0;
  const double eta = rate > 0 ? (total_ - done) / rate : -1;
  const int width = 24;
  const int filled = total_ > 0 ? static_cast<int>(width * std::min<double>(1.0, double(done) / total_)) : 0;
  std::string bar(filled, '#');
  bar += std::string(width - filled, '.');
  std::fprintf(stderr, "%s%s [%s] %lld/%lld %.2f %s/s eta %s %s%s", tty_ ? "\r" : "", label_.c_str(), bar.c_str(),
               static_cast<long long>(done), static_cast<long long>(total_), rate, unit_.c_str(),
               fmt_time(eta).c_str(), extra.c_str(), tty_ ? "\033[K" : "\n");
  std::fflush(stderr);
}

void Progress::finish(const std::string& extra) {
  // The final line is drawn once: update(total) may have drawn it already.
  if (drawn_ != total_ || !extra.empty()) {
    last_ = std::chrono::steady_clock::time_point{};
    update(total_, extra);
  }
  if (tty_) std::fprintf(stderr, "\n");
}

void set_threads(int n) {
  if (n > 0) omp_set_num_threads(n);
}

}  // namespace dl::cli
