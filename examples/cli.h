// Shared pieces of the `deeperlab` subcommands: a small option parser (every subcommand gets
// --help and an error for unknown options), the subcommand entry points, and a progress bar.
#pragma once
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

namespace dl::cli {

class ArgParser {
 public:
  ArgParser(std::string command, std::string summary);
  // An option taking a value ("--config FILE"); `def` empty and `required` true -> must be given.
  ArgParser& option(const std::string& name, const std::string& help, const std::string& def = "",
                    bool required = false);
  ArgParser& flag(const std::string& name, const std::string& help);  // "--json"
  ArgParser& positional(const std::string& name, const std::string& help, bool required = true);
  // Parses argv (after the subcommand). Returns false when --help was printed (caller returns 0).
  // Throws dl::Error on unknown options or missing values.
  bool parse(int argc, char** argv);

  std::string get(const std::string& name) const;
  bool has(const std::string& name) const;  // given on the command line (or a flag set)
  int get_int(const std::string& name) const;
  double get_double(const std::string& name) const;
  bool get_flag(const std::string& name) const;
  void print_help() const;

 private:
  struct Opt {
    std::string name, help, def;
    bool is_flag = false, required = false, positional = false;
  };
  std::string command_, summary_;
  std::vector<Opt> opts_;
  std::map<std::string, std::string> values_;
  const Opt* find(const std::string& name) const;
};

// A one-line progress bar on stderr with rate and ETA; redraws at most 10 times a second.
class Progress {
 public:
  Progress(std::string label, int64_t total, std::string unit = "it");
  void update(int64_t done, const std::string& extra = "");
  void finish(const std::string& extra = "");

 private:
  std::string label_, unit_;
  int64_t total_;
  int64_t drawn_ = -1;  // `done` of the last line drawn
  std::chrono::steady_clock::time_point start_, last_;
  bool tty_;
};

// Applies --threads N (0 = all cores) to OpenMP.
void set_threads(int n);

int cmd_synth(int argc, char** argv);
int cmd_train(int argc, char** argv);
int cmd_infer(int argc, char** argv);
int cmd_eval(int argc, char** argv);
int cmd_grad(int argc, char** argv);
int cmd_params(int argc, char** argv);
int cmd_convert(int argc, char** argv);
int cmd_bench(int argc, char** argv);

}  // namespace dl::cli
