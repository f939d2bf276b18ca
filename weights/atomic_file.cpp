#include "weights/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "core/error.h"
#include "weights/safetensors.h"

namespace dl {

namespace {
std::atomic<int64_t> g_fail_after{-1};

std::string parent_dir(const std::string& path) {
  auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}
}  // namespace

namespace detail {
void fail_next_write_after(int64_t bytes) {
  g_fail_after.store(bytes);
}
}  // namespace detail

void write_file_atomic(const std::string& path, const std::vector<ByteSpan>& chunks) {
  DL_CHECK(!path.empty(), "write: empty output path");
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  DL_CHECK(fd >= 0, "cannot write '" << path << "': creating the temporary file '" << tmp
                                     << "' failed: " << std::strerror(errno));
  const int64_t fail_after = g_fail_after.exchange(-1);
  auto fail = [&](const char* what, int err) {
    ::close(fd);
    ::unlink(tmp.c_str());
    DL_FAIL("cannot write '" << path << "': " << what << " failed: " << std::strerror(err)
                             << " (the previous file, if any, is unchanged)");
  };
  int64_t written = 0;
  for (const auto& c : chunks) {
    const char* p = static_cast<const char*>(c.data);
    size_t left = c.size;
    while (left > 0) {
      size_t n = left;
      if (fail_after >= 0 && written + static_cast<int64_t>(n) > fail_after) {
        n = static_cast<size_t>(fail_after - written);
        if (n == 0) fail("write", ENOSPC);
      }
      const ssize_t r = ::write(fd, p, n);
      if (r < 0) {
        if (errno == EINTR) continue;
        fail("write", errno);
      }
      p += r;
      left -= static_cast<size_t>(r);
      written += r;
    }
  }
  if (::fsync(fd) != 0) fail("fsync", errno);
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    DL_FAIL("cannot write '" << path << "': close failed: " << std::strerror(err));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    DL_FAIL("cannot write '" << path << "': renaming '" << tmp << "' over it failed: " << std::strerror(err)
                             << " (the previous file, if any, is unchanged)");
  }
  // Make the rename itself durable; best effort (some filesystems refuse fsync on folders).
  const int dfd = ::open(parent_dir(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace dl
