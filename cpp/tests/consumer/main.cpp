// Built against the installed package only (find_package(fdrpc)): an fd crosses a
// socketpair inside a THeader frame with its fdrpc-fds header, and arrives close-on-exec.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <memory>

#include <thrift/protocol/TCompactProtocol.h>

#include <fdrpc/thrift.h>

int main() {
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) return 1;
  fdrpc::FdHeaderTransport out(std::make_shared<fdrpc::FdSocket>(pair[0]));
  fdrpc::FdHeaderTransport in(std::make_shared<fdrpc::FdSocket>(pair[1]));
  apache::thrift::protocol::TCompactProtocol wproto(std::shared_ptr<apache::thrift::transport::TTransport>(&out, [](auto*) {}));
  apache::thrift::protocol::TCompactProtocol rproto(std::shared_ptr<apache::thrift::transport::TTransport>(&in, [](auto*) {}));

  int memfd = memfd_create("consumer", MFD_CLOEXEC);
  if (memfd < 0 || write(memfd, "through", 7) != 7) return 1;
  int32_t index = out.attach_owned(memfd);
  wproto.writeMessageBegin("deposit", apache::thrift::protocol::T_ONEWAY, 1);
  wproto.writeI32(index);
  wproto.writeMessageEnd();
  out.flush();

  std::string name;
  apache::thrift::protocol::TMessageType type;
  int32_t seqid = 0, got = -1;
  rproto.readMessageBegin(name, type, seqid);
  rproto.readI32(got);
  rproto.readMessageEnd();
  int fd = in.take(got);
  char buf[8] = {};
  bool ok = name == "deposit" && pread(fd, buf, 7, 0) == 7 && std::string(buf) == "through" &&
            (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0;
  close(fd);
  std::printf("fdrpc C++ package: %s\n", ok ? "an fd crossed" : "FAILED");
  return ok ? 0 : 1;
}
