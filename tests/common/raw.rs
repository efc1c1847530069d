//! A raw peer: THeader frames and SCM_RIGHTS written by hand, and what comes back, read with
//! fdrpc's own receive queue. For tests that play a hostile or hand-written peer.
#![allow(dead_code)]

use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use fdrpc::Settings;
use fdrpc::codec::{Encoder, MessageType};
use fdrpc::transport::{Fill, RecvQueue};

use super::is_cloexec;

/// What came back on a raw connection.
#[derive(Debug)]
pub enum Got {
    /// A frame (a reply, an exception, or a stream frame).
    Reply {
        ty: MessageType,
        name: String,
        /// The message's sequence id.
        seqid: i32,
        /// `fdrpc-stream`, if the frame has it.
        stream: Option<String>,
        /// `fdrpc-credit`, if the frame has it.
        credit: Option<String>,
        body: Vec<u8>,
        fds: Vec<OwnedFd>,
    },
    Closed,
    Nothing,
}

pub struct Raw {
    pub sock: UnixStream,
    pub rq: RecvQueue,
}

impl Raw {
    pub fn new(sock: UnixStream) -> Raw {
        Raw {
            sock,
            rq: RecvQueue::new(&Settings::default()),
        }
    }

    pub fn send(&self, bytes: &[u8], fds: &[BorrowedFd<'_>]) {
        let sent = self.try_send(bytes, fds).unwrap();
        assert_eq!(sent, bytes.len());
    }

    /// Sends as [`Raw::send`] does, returning the error of a connection the server has
    /// closed already (`EPIPE`, `ECONNRESET`) instead of failing the test.
    pub fn try_send(&self, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> rustix::io::Result<usize> {
        let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(253))];
        let mut control = rustix::net::SendAncillaryBuffer::new(&mut space);
        if !fds.is_empty() {
            assert!(control.push(rustix::net::SendAncillaryMessage::ScmRights(fds)));
        }
        rustix::net::sendmsg(
            &self.sock,
            &[IoSlice::new(bytes)],
            &mut control,
            rustix::net::SendFlags::NOSIGNAL,
        )
    }

    /// Reads the next frame, or notices the connection closed, within `wait`.
    pub fn next(&mut self, wait: Duration) -> Got {
        let deadline = Instant::now() + wait;
        loop {
            match self.rq.next_frame() {
                Ok(Some(f)) => {
                    assert!(
                        f.fds.iter().all(is_cloexec),
                        "a received fd is not close-on-exec"
                    );
                    let mut dec =
                        fdrpc::codec::Decoder::new(f.frame.payload, fdrpc::FdTable::empty());
                    let h = dec.read_message_header().unwrap();
                    let body = f.frame.payload[f.frame.payload.len() - dec.remaining()..].to_vec();
                    let header = |key: &str| {
                        f.frame
                            .header(key)
                            .map(|v| String::from_utf8_lossy(v).into_owned())
                    };
                    return Got::Reply {
                        ty: h.ty,
                        name: h.name.to_owned(),
                        seqid: h.seqid,
                        stream: header("fdrpc-stream"),
                        credit: header("fdrpc-credit"),
                        body,
                        fds: f.fds.into_iter().collect(),
                    };
                }
                Ok(None) => {}
                Err(e) => panic!("the server sent a broken frame: {e}"),
            }
            match self.rq.fill_until(self.sock.as_fd(), Some(deadline)) {
                Ok(Fill::Read(_)) => {}
                Ok(Fill::WouldBlock) => return Got::Nothing,
                Ok(Fill::Eof) => return Got::Closed,
                Err(e) => match e {
                    fdrpc::TransportError::Io(io)
                        if io.kind() == std::io::ErrorKind::ConnectionReset =>
                    {
                        return Got::Closed;
                    }
                    other => panic!("{other}"),
                },
            }
        }
    }

    /// Replies already queued may come first; then the connection must close within
    /// `wait`.
    pub fn expect_closed_within(&mut self, wait: Duration) {
        let deadline = Instant::now() + wait;
        loop {
            match self.next(deadline.saturating_duration_since(Instant::now())) {
                Got::Closed => return,
                Got::Reply { .. } => continue,
                Got::Nothing => panic!("the server kept the connection open"),
            }
        }
    }

    /// The next frame is a `TApplicationException` of `kind`; returns its message.
    pub fn expect_application_error(&mut self, kind: fdrpc::ApplicationErrorKind) -> String {
        match self.next(Duration::from_secs(5)) {
            Got::Reply { ty, body, fds, .. } => {
                assert_eq!(ty, MessageType::Exception);
                assert!(fds.is_empty());
                let code = exception_code(&body);
                assert_eq!(fdrpc::ApplicationErrorKind::from_code(code), kind);
                exception_message(&body)
            }
            other => panic!("expected a TApplicationException, got {other:?}"),
        }
    }

    /// A valid `whoami` call answered on this connection.
    pub fn still_answers(&mut self, seqid: i32) {
        self.send(&frame(seqid, &[], &call("whoami", seqid, &[0])), &[]);
        match self.next(Duration::from_secs(5)) {
            Got::Reply { ty, name, .. } => {
                assert_eq!((ty, name.as_str()), (MessageType::Reply, "whoami"));
            }
            other => panic!("no answer: {other:?}"),
        }
    }
}

/// The `message` field of a TApplicationException body.
pub fn exception_message(body: &[u8]) -> String {
    let mut dec = fdrpc::codec::Decoder::new(body, fdrpc::FdTable::empty());
    let mut last = 0;
    let mut message = String::new();
    while let Some((ty, id)) = dec.read_field_header(&mut last).unwrap() {
        if id == 1 {
            message = String::from_utf8(dec.read_binary().unwrap().to_vec()).unwrap();
        } else {
            dec.skip(ty).unwrap();
        }
    }
    message
}

/// The `type` field of a TApplicationException body.
pub fn exception_code(body: &[u8]) -> i32 {
    let mut dec = fdrpc::codec::Decoder::new(body, fdrpc::FdTable::empty());
    let mut last = 0;
    let mut code = -1;
    while let Some((ty, id)) = dec.read_field_header(&mut last).unwrap() {
        if id == 2 {
            code = dec.read_i32().unwrap();
        } else {
            dec.skip(ty).unwrap();
        }
    }
    code
}

/// A THeader frame with exactly the given info headers.
pub fn frame(seqid: i32, headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    fdrpc::transport::frame::write_frame(&mut out, seqid, 0, 0, headers, payload).unwrap();
    out
}

/// A compact CALL message: header, then `args` (a struct body, stop byte included).
pub fn call(name: &str, seqid: i32, args: &[u8]) -> Vec<u8> {
    let mut enc = Encoder::new();
    enc.write_message_header(name, MessageType::Call, seqid)
        .unwrap();
    let (mut out, _) = enc.into_parts();
    out.extend_from_slice(args);
    out
}

/// `echo_args { 1: Bundle { 1: label, 2: fds = indices } }`.
pub fn echo_args(indices: &[i32]) -> Vec<u8> {
    let mut enc = Encoder::new();
    let mut last = 0;
    enc.write_field_header(12, 1, &mut last);
    let mut inner = 0;
    enc.write_field_header(8, 1, &mut inner);
    enc.write_binary(b"raw").unwrap();
    enc.write_field_header(9, 2, &mut inner);
    enc.write_list_header(fdrpc::codec::TType::I32, indices.len())
        .unwrap();
    for &i in indices {
        enc.write_i32(i);
    }
    enc.write_stop();
    enc.write_stop();
    enc.into_parts().0
}

/// A frame declaring `declared` fds, after `seq` fds sent earlier, around `payload`.
pub fn fd_frame(seqid: i32, declared: usize, seq: i64, payload: &[u8]) -> Vec<u8> {
    let (n, s) = (declared.to_string(), seq.to_string());
    frame(seqid, &[("fdrpc-fds", &n), ("fdrpc-fd-seq", &s)], payload)
}

pub fn borrowed(fds: &[OwnedFd]) -> Vec<BorrowedFd<'_>> {
    fds.iter().map(|f| f.as_fd()).collect()
}
