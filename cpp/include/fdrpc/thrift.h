// fdrpc for stock Apache Thrift in C++: a socket transport that carries fds, and a THeader
// transport that says how many each frame owns. The C++ counterpart of the Python package, and all
// that C++ needs beyond libthrift (docs/PROTOCOL.md, "Writing a client in another language"):
//
// - FdSocket sends bytes with sendmsg + SCM_RIGHTS and receives with recvmsg
//   (MSG_CMSG_CLOEXEC), keeping received fds in a FIFO.
// - FdHeaderTransport is a THeaderTransport (compact protocol) that sets fdrpc-fds and
//   fdrpc-fd-seq on each frame it writes and, for each frame it reads, takes fdrpc-fds fds
//   from the FIFO after checking fdrpc-fd-seq.
//
// An fd field of a generated struct holds an index: attach(fd) returns the index to put in
// the next outgoing message (the caller keeps its fd; attach_owned(fd) closes it once sent),
// and take(i) hands over the fd that index i of the last incoming message refers to.
#pragma once

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <thrift/transport/THeaderTransport.h>
#include <thrift/transport/TTransportException.h>
#include <thrift/transport/TVirtualTransport.h>

namespace fdrpc {

using apache::thrift::transport::TTransportException;

constexpr size_t SCM_MAX_FD = 253;

// The fd stream is broken: the connection must be closed.
struct FdStreamError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class FdSocket : public apache::thrift::transport::TVirtualTransport<FdSocket> {
 public:
  explicit FdSocket(int sock) : sock_(sock) {}
  ~FdSocket() override { close(); }

  bool isOpen() const override { return sock_ >= 0; }
  void open() override {}
  void close() override {
    if (sock_ >= 0) ::close(sock_);
    sock_ = -1;
    while (!fifo_.empty()) {
      ::close(fifo_.front());
      fifo_.pop_front();
    }
  }

  uint32_t read(uint8_t* buf, uint32_t len) {
    if (rpos_ == rbuf_.size()) fill();
    uint32_t n = std::min<uint32_t>(len, rbuf_.size() - rpos_);
    std::memcpy(buf, rbuf_.data() + rpos_, n);
    rpos_ += n;
    return n;
  }

  void write(const uint8_t* buf, uint32_t len) { wbuf_.insert(wbuf_.end(), buf, buf + len); }

  // Every fd rides with the first byte of a sendmsg that starts at or before its frame's last
  // byte; more than 253 go in several sendmsg calls of one byte each.
  void flush() override {
    size_t off = 0;
    size_t next_fd = 0;
    while (next_fd < out_fds.size()) {
      size_t batch = std::min(SCM_MAX_FD, out_fds.size() - next_fd);
      bool more = next_fd + batch < out_fds.size();
      size_t n = more ? 1 : wbuf_.size() - off;
      off += send_with_fds(wbuf_.data() + off, n, out_fds.data() + next_fd, batch);
      next_fd += batch;
    }
    while (off < wbuf_.size()) off += send_with_fds(wbuf_.data() + off, wbuf_.size() - off, nullptr, 0);
    wbuf_.clear();
    out_fds.clear();
  }

  // The fds the next flush sends (set by FdHeaderTransport).
  std::vector<int> out_fds;
  // Received fds no frame has claimed yet, in arrival order.
  std::deque<int> fifo_;

 private:
  void fill() {
    rbuf_.assign(65536, 0);
    rpos_ = 0;
    alignas(struct cmsghdr) char control[CMSG_SPACE(SCM_MAX_FD * sizeof(int))];
    struct iovec iov = {rbuf_.data(), rbuf_.size()};
    struct msghdr msg = {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t got;
    do {
      got = ::recvmsg(sock_, &msg, MSG_CMSG_CLOEXEC);
    } while (got < 0 && errno == EINTR);
    if (got < 0) throw TTransportException(TTransportException::UNKNOWN, "recvmsg", errno);
    for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        const int* fds = reinterpret_cast<const int*>(CMSG_DATA(c));
        for (size_t i = 0; i < n; ++i) fifo_.push_back(fds[i]);
      }
    }
    if (msg.msg_flags & MSG_CTRUNC) throw FdStreamError("control data truncated: fds were lost");
    if (got == 0) throw TTransportException(TTransportException::END_OF_FILE, "peer closed");
    rbuf_.resize(static_cast<size_t>(got));
  }

  size_t send_with_fds(const uint8_t* data, size_t len, const int* fds, size_t nfds) {
    alignas(struct cmsghdr) char control[CMSG_SPACE(SCM_MAX_FD * sizeof(int))];
    struct iovec iov = {const_cast<uint8_t*>(data), len};
    struct msghdr msg = {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (nfds > 0) {
      msg.msg_control = control;
      msg.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
      struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
      std::memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
    }
    ssize_t sent;
    do {
      sent = ::sendmsg(sock_, &msg, MSG_NOSIGNAL);
    } while (sent < 0 && errno == EINTR);
    if (sent < 0) throw TTransportException(TTransportException::UNKNOWN, "sendmsg", errno);
    return static_cast<size_t>(sent);
  }

  int sock_;
  std::vector<uint8_t> rbuf_;
  size_t rpos_ = 0;
  std::vector<uint8_t> wbuf_;
};

class FdHeaderTransport : public apache::thrift::transport::THeaderTransport {
 public:
  explicit FdHeaderTransport(std::shared_ptr<FdSocket> sock)
      : THeaderTransport(sock), sock_(std::move(sock)) {}
  ~FdHeaderTransport() override { close_received(); }

  // Adds `fd` to the next message (a copy travels; the caller keeps its own); returns its
  // index.
  int32_t attach(int fd) {
    pending_.push_back(fd);
    return static_cast<int32_t>(pending_.size() - 1);
  }

  // As attach, but `fd` is closed once the message is sent.
  int32_t attach_owned(int fd) {
    owned_.push_back(fd);
    return attach(fd);
  }

  // Marks the next message written as a stream frame of `kind` (`item`, `end`, `credit`,
  // `cancel`, ...: docs/PROTOCOL.md, "Streams and sinks"), with `credit` for a `credit`.
  void stream_frame(const std::string& kind, int64_t credit = -1) {
    stream_kind_ = kind;
    stream_credit_ = credit;
  }

  // Whether frames with an `fdrpc-stream` header are dropped when read (with their fds), as
  // they are by default: a stock generated client or Processor would take a stream frame
  // for a reply or a call (a late `credit` run as a call with every argument unset; a late
  // stream item read as the next call's reply). Turn it off to read streams by hand.
  void drop_stream_frames(bool drop) { drop_stream_frames_ = drop; }

  // Frames dropped so far.
  uint64_t dropped() const { return dropped_; }

  // Closes the connection and every fd it holds: the last message's that nobody took, and
  // those received for messages not yet read.
  void close() override {
    close_received();
    for (int fd : owned_) ::close(fd);
    owned_.clear();
    pending_.clear();
    // Not THeaderTransport::close, which flushes first: closing must not write.
    sock_->close();
  }

  void flush() override {
    // The THeader seqid is the message's (docs/PROTOCOL.md): THeaderProtocol would set it,
    // but it makes its own THeaderTransport, so TCompactProtocol is used over this one and
    // the seqid is read from the compact message header: 0x82, type and version, varint.
    const uint8_t* p = wBuf_.get();
    size_t len = static_cast<size_t>(wBase_ - p);
    if (len >= 3 && p[0] == 0x82) {
      uint32_t seqid = 0;
      for (size_t i = 2, shift = 0; i < len && shift < 35; ++i, shift += 7) {
        seqid |= static_cast<uint32_t>(p[i] & 0x7f) << shift;
        if (!(p[i] & 0x80)) break;
      }
      setSequenceNumber(static_cast<int32_t>(seqid));
    }
    clearHeaders();
    if (!stream_kind_.empty()) {
      setHeader("fdrpc-stream", stream_kind_);
      if (stream_credit_ >= 0) setHeader("fdrpc-credit", std::to_string(stream_credit_));
      stream_kind_.clear();
      stream_credit_ = -1;
    }
    if (!pending_.empty()) {
      setHeader("fdrpc-fds", std::to_string(pending_.size()));
      setHeader("fdrpc-fd-seq", std::to_string(sent_));
    }
    sent_ += static_cast<int64_t>(pending_.size());
    sock_->out_fds = pending_;
    pending_.clear();
    THeaderTransport::flush();
    for (int fd : owned_) ::close(fd);
    owned_.clear();
  }

  // The fd at `index` of the last incoming message; the caller now owns it.
  int take(int32_t index) {
    if (index < 0 || static_cast<size_t>(index) >= received_.size())
      throw FdStreamError("fd index " + std::to_string(index) + " out of range");
    int fd = received_[index];
    if (fd < 0) throw FdStreamError("fd index " + std::to_string(index) + " claimed twice");
    received_[index] = -1;
    return fd;
  }

  // Closes the fds of the last incoming message that nobody took.
  void close_received() {
    for (int fd : received_)
      if (fd >= 0) ::close(fd);
    received_.clear();
  }

 protected:
  bool readFrame() override {
    for (;;) {
      if (!readOneFrame()) return false;
      if (!drop_stream_frames_ || getHeaders().count("fdrpc-stream") == 0) return true;
      close_received();
      ++dropped_;
    }
  }

 private:
  bool readOneFrame() {
    if (!THeaderTransport::readFrame()) return false;
    const auto& headers = getHeaders();
    auto n_it = headers.find("fdrpc-fds");
    size_t n = n_it == headers.end() ? 0 : std::stoul(n_it->second);
    auto seq_it = headers.find("fdrpc-fd-seq");
    if (seq_it != headers.end() && std::stoll(seq_it->second) != claimed_)
      throw FdStreamError("fd sequence mismatch: " + seq_it->second + " != " + std::to_string(claimed_));
    if (n > sock_->fifo_.size())
      throw FdStreamError("frame declares " + std::to_string(n) + " fds, " +
                          std::to_string(sock_->fifo_.size()) + " arrived");
    close_received();
    for (size_t i = 0; i < n; ++i) {
      received_.push_back(sock_->fifo_.front());
      sock_->fifo_.pop_front();
    }
    claimed_ += static_cast<int64_t>(n);
    return true;
  }

 private:
  std::shared_ptr<FdSocket> sock_;
  std::vector<int> pending_;
  std::vector<int> owned_;
  std::vector<int> received_;
  int64_t sent_ = 0;
  int64_t claimed_ = 0;
  std::string stream_kind_;
  int64_t stream_credit_ = -1;
  bool drop_stream_frames_ = true;
  uint64_t dropped_ = 0;
};

// A connected AF_UNIX stream socket to `path`.
inline int connect_unix(const std::string& path) {
  int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  if (::connect(s, reinterpret_cast<struct sockaddr*>(&addr), sizeof addr) < 0) {
    int e = errno;
    ::close(s);
    throw std::runtime_error("connect " + path + ": " + std::strerror(e));
  }
  return s;
}

}  // namespace fdrpc
