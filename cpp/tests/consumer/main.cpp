// Built against the installed package only (find_package(fdrpc)): an fd crosses a
// socketpair inside a THeader frame and arrives close-on-exec; a stream frame (a late
// `credit`, here carrying an fd) is dropped with its fd before the reader sees it; close()
// closes the fds nobody took.
#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>

#include <thrift/protocol/TCompactProtocol.h>

#include <fdrpc/thrift.h>

using apache::thrift::protocol::TCompactProtocol;
using apache::thrift::transport::TTransport;

static int fd_count() {
  int n = 0;
  DIR* d = opendir("/proc/self/fd");
  while (readdir(d) != nullptr) ++n;
  closedir(d);
  return n;
}

static int memfd(const char* text) {
  int fd = memfd_create("consumer", MFD_CLOEXEC);
  if (fd < 0 || write(fd, text, strlen(text)) != static_cast<ssize_t>(strlen(text))) return -1;
  return fd;
}

static bool check(bool ok, const char* what) {
  if (!ok) std::printf("FAILED: %s\n", what);
  return ok;
}

static void send(fdrpc::FdHeaderTransport& t, TCompactProtocol& p, const char* name, int fd) {
  int32_t index = fd >= 0 ? t.attach_owned(fd) : -1;
  p.writeMessageBegin(name, apache::thrift::protocol::T_ONEWAY, 1);
  p.writeI32(index);
  p.writeMessageEnd();
  t.flush();
}

int main() {
  int before = fd_count();
  bool ok = true;
  {
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) return 1;
    auto out = std::make_shared<fdrpc::FdHeaderTransport>(std::make_shared<fdrpc::FdSocket>(pair[0]));
    auto in = std::make_shared<fdrpc::FdHeaderTransport>(std::make_shared<fdrpc::FdSocket>(pair[1]));
    TCompactProtocol wproto(std::static_pointer_cast<TTransport>(out));
    TCompactProtocol rproto(std::static_pointer_cast<TTransport>(in));

    out->stream_frame("credit", 4);
    send(*out, wproto, "deposit", memfd("dropped"));
    send(*out, wproto, "deposit", memfd("through"));
    send(*out, wproto, "deposit", memfd("never taken"));

    std::string name;
    apache::thrift::protocol::TMessageType type;
    int32_t seqid = 0, got = -1;
    rproto.readMessageBegin(name, type, seqid);
    rproto.readI32(got);
    rproto.readMessageEnd();
    ok &= check(in->dropped() == 1, "the credit frame was not dropped");
    int fd = in->take(got);
    char buf[16] = {};
    ok &= check(pread(fd, buf, 7, 0) == 7 && std::string(buf) == "through", "the fd's contents");
    ok &= check((fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0, "close-on-exec");
    close(fd);
    rproto.readMessageBegin(name, type, seqid);
    rproto.readI32(got);
    rproto.readMessageEnd();
    // Not taken: close() closes it.
    in->close();
    out->close();
    ok &= check(fd_count() == before, "fds left open after close()");
  }
  std::printf("fdrpc C++ package: %s\n", ok ? "an fd crossed; a stream frame dropped; nothing leaked" : "FAILED");
  return ok ? 0 : 1;
}
