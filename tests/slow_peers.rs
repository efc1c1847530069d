//! A peer is judged by its progress, not by the kernel buffer's: one that reads slowly but
//! steadily is served to the end, one that stops reading is dropped after one stall timeout,
//! with every fd it held closed.

mod common;
#[path = "../examples/conformance/main.rs"]
#[allow(dead_code)]
mod conformance;

use std::io::IoSliceMut;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::raw::*;
use common::*;
use conformance::{ConformanceImpl, ConformanceServer};
use fdrpc::Settings;

const STALL: Duration = Duration::from_millis(400);

fn server() -> ThreadServer {
    ThreadServer::start(
        || fdrpc::Server::with_settings(Settings::default().stall_timeout(STALL)),
        || ConformanceServer::new(ConformanceImpl::default()),
    )
}

/// `memfds(count)` granting the whole stream as credit at once.
fn endless_credit_call(count: i32) -> Vec<u8> {
    let mut args = fdrpc::codec::Encoder::new();
    let mut last = 0;
    args.write_field_header(5, 1, &mut last);
    args.write_i32(count);
    args.write_stop();
    let args = args.into_parts().0;
    frame(1, &[("fdrpc-credit", "65536")], &call("memfds", 1, &args))
}

/// One `recvmsg` of at most `buf.len()` bytes; the fds that come with it are returned (owned,
/// so closed when dropped). `None` at the end of the stream.
fn read_some(sock: &UnixStream, buf: &mut [u8]) -> Option<(usize, Vec<OwnedFd>)> {
    let mut space = vec![std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(253))];
    let mut control = rustix::net::RecvAncillaryBuffer::new(&mut space);
    let got = rustix::net::recvmsg(
        sock,
        &mut [IoSliceMut::new(buf)],
        &mut control,
        rustix::net::RecvFlags::CMSG_CLOEXEC | rustix::net::RecvFlags::DONTWAIT,
    );
    let got = match got {
        Ok(g) => g,
        Err(rustix::io::Errno::AGAIN) => return Some((0, Vec::new())),
        Err(e) => panic!("{e}"),
    };
    let mut fds = Vec::new();
    for msg in control.drain() {
        if let rustix::net::RecvAncillaryMessage::ScmRights(r) = msg {
            fds.extend(r);
        }
    }
    (got.bytes > 0 || !fds.is_empty()).then_some((got.bytes, fds))
}

/// The items and the end among the whole frames at the start of `bytes`, and how many bytes
/// those frames take (the rest is a frame still arriving).
fn count_items(bytes: &[u8]) -> (usize, bool, usize) {
    let (mut items, mut ended, mut at) = (0, false, 0);
    while let Ok(Some(n)) = fdrpc::transport::frame::frame_len(&bytes[at..], usize::MAX) {
        if at + n > bytes.len() {
            break;
        }
        let f = fdrpc::transport::frame::parse_frame(&bytes[at..at + n]).unwrap();
        match f.header("fdrpc-stream") {
            Some(b"item") => items += 1,
            Some(b"end") => ended = true,
            _ => {}
        }
        at += n;
    }
    (items, ended, at)
}

#[test]
fn a_slow_steady_reader_is_served_to_the_end_of_a_long_stream() {
    let _check = fd_leak_check();
    let server = server();
    let sock = UnixStream::connect(&server.path).unwrap();
    sock.set_nonblocking(true).unwrap();
    let count = 20_000;
    Raw::new(sock.try_clone().unwrap()).send(&endless_credit_call(count), &[]);
    // 2 KiB a millisecond, about 1.5 MB in all: the socket, once full, becomes writable again
    // only once most of it is read, yet the reader never stops taking. (The kernel frees what
    // a peer reads a whole buffer of a `sendmsg`, up to ~100 KiB, at a time: that is the
    // grain at which the server can see it read, and a reader must take that much per stall
    // timeout. At 512 bytes a millisecond, two busy loops beside the test slowed this
    // reader below it, 4 to 9 runs in 20, and the server rightly dropped it.)
    let (mut bytes, mut fds_in) = (Vec::new(), 0);
    // The whole frames counted so far, and where they end: each read parses only what is
    // new (parsing everything again each time made the reader itself the slow part).
    let (mut items, mut ended, mut whole) = (0, false, 0);
    let mut buf = [0u8; 2048];
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    while !ended {
        assert!(Instant::now() < deadline, "the stream never ended");
        let Some((n, fds)) = read_some(&sock, &mut buf) else {
            panic!(
                "the server dropped a reader that never stopped reading, after {:?} and {} bytes",
                started.elapsed(),
                bytes.len()
            );
        };
        bytes.extend_from_slice(&buf[..n]);
        fds_in += fds.len();
        drop(fds);
        let (more, end, at) = count_items(&bytes[whole..]);
        (items, ended, whole) = (items + more, end, whole + at);
        if !ended {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    assert_eq!(whole, bytes.len(), "a frame was cut off");
    assert_eq!(items, count as usize);
    assert_eq!(fds_in, count as usize);
    // The slow reading took many stall timeouts: the case is the one that matters.
    assert!(started.elapsed() > 2 * STALL, "{:?}", started.elapsed());
    drop(sock);
    drop(server);
}

#[test]
fn a_reader_that_stops_is_dropped_after_one_stall_timeout() {
    let _check = fd_leak_check();
    let server = server();
    let baseline = fd_count();
    let sock = UnixStream::connect(&server.path).unwrap();
    let sent = Instant::now();
    Raw::new(sock.try_clone().unwrap()).send(&endless_credit_call(1 << 20), &[]);
    // Nothing is read; the server must hang up (RDHUP) within one stall timeout of filling
    // the socket and its backlog, which takes it a few milliseconds.
    let hung_up = hung_up_within(&sock, Duration::from_secs(10));
    let took = sent.elapsed();
    assert!(hung_up, "still open after {took:?}");
    assert!(took >= STALL, "dropped before the stall timeout: {took:?}");
    assert!(
        took < STALL * 2,
        "dropped after {took:?}: more than one stall timeout ({STALL:?})"
    );
    // Every fd the server held for it is closed (what is still in this socket's buffer goes
    // with the socket).
    drop(sock);
    settle_fd_count(baseline);
    drop(server);
}

/// `echo` of a bundle whose label is `size` bytes: a reply as large.
fn large_echo(seqid: i32, size: usize) -> Vec<u8> {
    let mut enc = fdrpc::codec::Encoder::new();
    let mut last = 0;
    enc.write_field_header(12, 1, &mut last);
    let mut inner = 0;
    enc.write_field_header(8, 1, &mut inner);
    enc.write_binary(&vec![b'x'; size]).unwrap();
    enc.write_field_header(9, 2, &mut inner);
    enc.write_list_header(fdrpc::codec::TType::I32, 0).unwrap();
    enc.write_stop();
    enc.write_stop();
    frame(seqid, &[], &call("echo", seqid, &enc.into_parts().0))
}

#[test]
fn a_client_that_stops_reading_its_replies_is_dropped_after_one_stall_timeout() {
    let _check = fd_leak_check();
    let server = ThreadServer::start(
        || {
            fdrpc::Server::with_settings(
                Settings::default()
                    .stall_timeout(STALL)
                    .max_backlog(256 << 10, 1024),
            )
        },
        || ConformanceServer::new(ConformanceImpl::default()),
    );
    let baseline = fd_count();
    let sock = UnixStream::connect(&server.path).unwrap();
    // Calls whose replies pile up unread, sent as fast as the server takes them, until it
    // stops reading (its reply backlog is full): from then on, one stall timeout and it
    // hangs up.
    let last_sent = std::sync::Arc::new(std::sync::Mutex::new(Instant::now()));
    let sender = std::thread::spawn({
        let (mut sock, last_sent) = (sock.try_clone().unwrap(), last_sent.clone());
        move || {
            for seqid in 1..2000 {
                if std::io::Write::write_all(&mut sock, &large_echo(seqid, 64 << 10)).is_err() {
                    return;
                }
                *last_sent.lock().unwrap() = Instant::now();
            }
            panic!("the server read every call");
        }
    });
    let hung_up = hung_up_within(&sock, Duration::from_secs(10));
    let took = last_sent.lock().unwrap().elapsed();
    assert!(hung_up, "still open after {took:?}");
    assert!(
        took < STALL * 3 / 2,
        "dropped {took:?} after the server stopped reading: more than one stall timeout \
         ({STALL:?})"
    );
    drop(sock);
    sender.join().unwrap();
    settle_fd_count(baseline);
    drop(server);
}
