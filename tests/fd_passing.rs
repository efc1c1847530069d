//! Fd counts from 0 to 1000 in one message, many frames and their fds per `sendmsg`, partial
//! writes, and the receive side's checks of counts and sequence numbers.

mod common;

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::*;
use fdrpc::Settings;
use fdrpc::transport::{Fill, RecvQueue, SendQueue};

#[derive(fdrpc::Message)]
struct Batch {
    seq: i32,
    fds: Vec<OwnedFd>,
}

fn round_trip(n: usize) {
    let _check = fd_leak_check();
    let (a, b) = UnixStream::pair().unwrap();
    let (mut tx, mut rx) = (
        fdrpc::Channel::new(a).unwrap(),
        fdrpc::Channel::new(b).unwrap(),
    );
    let fds = numbered(n);
    let inos: Vec<_> = fds.iter().map(ino).collect();
    // Sending must not block on a socket buffer: do it from another thread.
    let sender = std::thread::spawn(move || {
        tx.send(Batch { seq: n as i32, fds }).unwrap();
        tx
    });
    let got: Batch = rx.recv().unwrap();
    let tx = sender.join().unwrap();
    assert_eq!(got.seq, n as i32);
    assert_eq!(got.fds.len(), n);
    for (i, fd) in got.fds.iter().enumerate() {
        assert_eq!(ino(fd), inos[i], "fd {i} is not the one sent at {i}");
        assert_eq!(contents(fd), i.to_string().as_bytes());
        assert!(is_cloexec(fd));
    }
    drop((got, tx, rx));
}

#[test]
fn zero_fds() {
    round_trip(0);
}

#[test]
fn one_fd() {
    round_trip(1);
}

#[test]
fn two_fds() {
    round_trip(2);
}

#[test]
fn scm_max_fd() {
    round_trip(253);
}

#[test]
fn one_more_than_scm_max_fd() {
    round_trip(254);
}

#[test]
fn a_thousand_fds() {
    round_trip(1000);
}

/// Frames with 0..=5 fds each, 600 of them, queued at once: the writer sends many frames and
/// their fds per `sendmsg`, cuts every 253 fds, and the reader matches each frame to its own.
/// A 4 KiB send buffer on a non-blocking socket forces short writes.
#[test]
fn many_frames_share_sendmsg_calls_and_keep_their_fds() {
    let _check = fd_leak_check();
    let (a, b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    rustix::net::sockopt::set_socket_send_buffer_size(&a, 4096).unwrap();
    let counts: Vec<usize> = (0..600).map(|i| [0, 1, 0, 0, 2, 5, 3][i % 7]).collect();
    let total: usize = counts.iter().sum();

    let writer = std::thread::spawn({
        let counts = counts.clone();
        move || {
            let mut q = SendQueue::new();
            let mut sendmsgs = 0;
            for (i, &n) in counts.iter().enumerate() {
                let fds: Vec<OwnedFd> = (0..n)
                    .map(|k| memfd(format!("{i}:{k}").as_bytes()).into())
                    .collect();
                let payload = vec![i as u8; 1 + i % 50];
                q.push(i as i32, &payload, fds, &[]).unwrap();
            }
            while !q.write_to(a.as_fd()).unwrap() {
                sendmsgs += 1;
                let mut p = [rustix::event::PollFd::new(
                    &a,
                    rustix::event::PollFlags::OUT,
                )];
                rustix::event::poll(&mut p, None).unwrap();
            }
            assert_eq!(q.pending_fds(), 0);
            (a, sendmsgs)
        }
    });

    let mut rq = RecvQueue::new(&Settings::default());
    let mut seen = 0;
    let mut fds_seen = 0;
    while seen < counts.len() {
        while let Some(f) = rq.next_frame().unwrap() {
            let i = seen;
            assert_eq!(f.frame.seqid, i as i32);
            assert_eq!(f.frame.payload, vec![i as u8; 1 + i % 50]);
            assert_eq!(f.fds.len(), counts[i]);
            for (k, fd) in f.fds.iter().enumerate() {
                assert_eq!(contents(fd), format!("{i}:{k}").as_bytes());
                assert!(is_cloexec(fd));
            }
            fds_seen += f.fds.len();
            seen += 1;
        }
        if seen < counts.len() {
            assert!(matches!(
                rq.fill_blocking(b.as_fd()).unwrap(),
                Fill::Read(_)
            ));
        }
    }
    assert_eq!(fds_seen, total);
    assert_eq!(rq.queued_fds(), 0);
    let (a, _) = writer.join().unwrap();
    drop(a);
    assert_eq!(rq.fill_blocking(b.as_fd()).unwrap(), Fill::Eof);
    rq.check_clean_eof().unwrap();
}

/// A frame that declares more fds than arrived with or before its last byte breaks the fd
/// stream; so does a wrong `fdrpc-fd-seq`. Every fd the queue held is closed.
#[test]
fn count_and_sequence_mismatches_break_the_stream() {
    let _check = fd_leak_check();
    let fd = memfd(b"only one");
    // A frame declaring `declared` fds from sequence number `seq`, sent with one fd: the
    // error its receiver reports.
    let error_for = |declared, seq| {
        let (a, b) = UnixStream::pair().unwrap();
        let mut frame = Vec::new();
        fdrpc::transport::frame::write_frame(&mut frame, 1, declared, seq, &[], b"x").unwrap();
        sendmsg_with(&a, &frame, &[fd.as_fd()]);
        let mut rq = RecvQueue::new(&Settings::default());
        rq.fill_blocking(b.as_fd()).unwrap();
        rq.next_frame().unwrap_err()
    };
    let err = error_for(2, 0);
    assert!(
        matches!(
            err,
            fdrpc::TransportError::FdStream(fdrpc::FdStreamError::MissingFds {
                declared: 2,
                available: 1
            })
        ),
        "{err}"
    );
    let err = error_for(1, 5);
    assert!(
        matches!(
            err,
            fdrpc::TransportError::FdStream(fdrpc::FdStreamError::SequenceMismatch {
                declared: 5,
                claimed: 0
            })
        ),
        "{err}"
    );
}

/// Fds beyond the per-connection budget of unclaimed fds fail the connection at once.
#[test]
fn unclaimed_fd_budget() {
    let _check = fd_leak_check();
    let (a, b) = UnixStream::pair().unwrap();
    let fds = numbered(200);
    let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
    // One byte with 200 fds, then 61, then 1. The budget of 8 is raised to 8 + 253 = 261:
    // one sendmsg may legally carry 253 fds ahead of a frame of 8. 261 fds queued are within
    // it, the 262nd is not.
    for n in [200, 61, 1] {
        sendmsg_with(&a, &[0], &borrowed[..n]);
    }
    let mut rq = RecvQueue::new(&Settings::default().max_fds_per_frame(8).max_queued_fds(8));
    for queued in [200, 261] {
        assert_eq!(rq.fill_blocking(b.as_fd()).unwrap(), Fill::Read(1));
        assert_eq!(rq.queued_fds(), queued);
    }
    let err = rq.fill_blocking(b.as_fd()).unwrap_err();
    assert!(
        matches!(
            err,
            fdrpc::TransportError::FdStream(fdrpc::FdStreamError::BudgetExceeded {
                queued: 262,
                budget: 261
            })
        ),
        "{err}"
    );
    drop(borrowed);
    drop((rq, a, b, fds));
}

/// A peer that closes with a frame half-sent, or with fds no frame claimed, is reported.
#[test]
fn eof_inside_a_frame_or_with_unclaimed_fds() {
    let _check = fd_leak_check();
    let (a, b) = UnixStream::pair().unwrap();
    let fd = memfd(b"parked");
    sendmsg_with(&a, &[0, 0, 0], &[fd.as_fd()]);
    drop(a);
    let mut rq = RecvQueue::new(&Settings::default());
    rq.fill_blocking(b.as_fd()).unwrap();
    assert_eq!(rq.fill_blocking(b.as_fd()).unwrap(), Fill::Eof);
    assert!(matches!(
        rq.check_clean_eof(),
        Err(fdrpc::TransportError::ClosedMidFrame(3))
    ));
    drop((rq, b, fd));

    // A whole frame that claims no fd, sent with one: the frame is delivered, and at the
    // end of the stream the fd nobody claimed is reported (and closed with the queue).
    let (x, y) = UnixStream::pair().unwrap();
    let mut q = SendQueue::new();
    q.push(1, b"payload", Vec::new(), &[]).unwrap();
    q.flush_blocking(x.as_fd()).unwrap();
    drop(x);
    let mut frame = Vec::new();
    std::io::Read::read_to_end(&mut &y, &mut frame).unwrap();
    let (a, b) = UnixStream::pair().unwrap();
    let fd = memfd(b"unclaimed");
    sendmsg_with(&a, &frame, &[fd.as_fd()]);
    drop((a, fd));
    let mut rq = RecvQueue::new(&Settings::default());
    rq.fill_blocking(b.as_fd()).unwrap();
    let got = rq.next_frame().unwrap().expect("the whole frame");
    assert_eq!(got.fds.len(), 0);
    drop(got);
    assert_eq!(rq.fill_blocking(b.as_fd()).unwrap(), Fill::Eof);
    let err = rq.check_clean_eof().unwrap_err();
    assert!(
        matches!(
            err,
            fdrpc::TransportError::FdStream(fdrpc::FdStreamError::UnclaimedAtEof(1))
        ),
        "{err}"
    );
    drop((rq, b, y));
}

/// One `sendmsg` of `bytes` with `fds` attached.
fn sendmsg_with(sock: &UnixStream, bytes: &[u8], fds: &[std::os::fd::BorrowedFd<'_>]) {
    rustix::net::sendmsg(
        sock,
        &[std::io::IoSlice::new(bytes)],
        &mut send_rights(fds),
        rustix::net::SendFlags::empty(),
    )
    .unwrap();
}

fn send_rights<'a>(
    fds: &'a [std::os::fd::BorrowedFd<'a>],
) -> rustix::net::SendAncillaryBuffer<'static, 'a, 'a> {
    let space: &'static mut [std::mem::MaybeUninit<u8>] = Box::leak(
        vec![std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(253))]
            .into_boxed_slice(),
    );
    let mut buf = rustix::net::SendAncillaryBuffer::new(space);
    assert!(buf.push(rustix::net::SendAncillaryMessage::ScmRights(fds)));
    buf
}

/// Frames of 0 to 1000 fds queued together, so that the writer must cut batches at 253 fds in
/// the middle of frames and of batches, over a small non-blocking send buffer.
#[test]
fn large_and_small_frames_interleaved_keep_their_fds() {
    let _check = fd_leak_check();
    let (a, b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    rustix::net::sockopt::set_socket_send_buffer_size(&a, 4096).unwrap();
    let counts = [0usize, 253, 1, 254, 0, 600, 3, 1000, 252, 2, 506, 0, 1];
    let writer = std::thread::spawn(move || {
        let mut q = SendQueue::new();
        // A frame written whole first: the queue's offsets no longer start at 0 when the
        // batches below are cut.
        q.push(-1, b"warm-up", Vec::new(), &[]).unwrap();
        assert!(q.write_to(a.as_fd()).unwrap());
        for (i, &n) in counts.iter().enumerate() {
            let fds: Vec<OwnedFd> = (0..n)
                .map(|k| memfd(format!("{i}:{k}").as_bytes()).into())
                .collect();
            q.push(i as i32, &vec![7u8; 1 + i], fds, &[]).unwrap();
        }
        while !q.write_to(a.as_fd()).unwrap() {
            let mut p = [rustix::event::PollFd::new(
                &a,
                rustix::event::PollFlags::OUT,
            )];
            rustix::event::poll(&mut p, None).unwrap();
        }
        a
    });
    let mut rq = RecvQueue::new(&Settings::default());
    let mut seen = 0;
    let mut warmed_up = false;
    while seen < counts.len() {
        while let Some(f) = rq.next_frame().unwrap() {
            if !warmed_up {
                assert_eq!((f.frame.seqid, f.fds.len()), (-1, 0));
                warmed_up = true;
                continue;
            }
            assert_eq!(f.frame.seqid, seen as i32);
            assert_eq!(f.fds.len(), counts[seen], "frame {seen}");
            for (k, fd) in f.fds.iter().enumerate() {
                assert_eq!(contents(fd), format!("{seen}:{k}").as_bytes());
            }
            seen += 1;
        }
        if seen < counts.len() {
            let filled = rq.fill_blocking(b.as_fd()).unwrap();
            assert!(
                matches!(filled, Fill::Read(_)),
                "the writer stopped early: {filled:?}"
            );
        }
    }
    assert_eq!(rq.queued_fds(), 0);
    drop(writer.join().unwrap());
    drop((rq, b));
}

/// The last frames of the queue, removed before any of them was written, take their fds with
/// them (closed); what is queued after still carries the fd sequence the receiver checks.
#[test]
fn an_unsent_frame_is_removed_with_its_fds() {
    let _check = fd_leak_check();
    let (a, b) = UnixStream::pair().unwrap();
    let mut q = SendQueue::new();
    let mut bounds = Vec::new();
    for (seqid, n) in [(1, 2), (2, 3), (3, 0), (4, 1), (5, 2)] {
        let start = q.queued();
        let fds: Vec<OwnedFd> = (0..n)
            .map(|k| OwnedFd::from(memfd(format!("{seqid}:{k}").as_bytes())))
            .collect();
        q.push(
            seqid,
            format!("payload {seqid}").as_bytes(),
            fds,
            &[("x-extra", "kept")],
        )
        .unwrap();
        bounds.push((start, q.queued()));
    }
    // Only the last frame, nothing of which was written, can go; a bogus range is refused.
    assert!(
        !q.remove_unsent(bounds[1].0, bounds[1].1),
        "not the last frame"
    );
    assert!(!q.remove_unsent(bounds[4].0 + 1, bounds[4].1));
    assert!(q.remove_unsent(bounds[4].0, bounds[4].1));
    assert!(q.remove_unsent(bounds[3].0, bounds[3].1));
    // Frame 3 (no fds) is last now: only its own bounds take it.
    assert!(!q.remove_unsent(bounds[2].0, bounds[2].1 + 1));
    assert!(!q.remove_unsent(bounds[2].0, bounds[2].1 - 1));
    assert_eq!(q.pending_fds(), 5);
    // A frame queued after the removals carries the fd sequence the receiver expects.
    q.push(
        6,
        b"payload 6",
        vec![OwnedFd::from(memfd(b"6:0"))],
        &[("x-extra", "kept")],
    )
    .unwrap();
    q.flush_blocking(a.as_fd()).unwrap();
    drop(a);
    let mut rq = RecvQueue::new(&Settings::default());
    let mut got = Vec::new();
    loop {
        while let Some(f) = rq.next_frame().unwrap() {
            let seqid = f.frame.seqid;
            assert_eq!(f.frame.payload, format!("payload {seqid}").as_bytes());
            assert_eq!(f.frame.header("x-extra"), Some(&b"kept"[..]));
            for (k, fd) in f.fds.iter().enumerate() {
                assert_eq!(contents(fd), format!("{seqid}:{k}").as_bytes());
            }
            got.push((seqid, f.fds.len()));
        }
        if rq.fill_blocking(b.as_fd()).unwrap() == Fill::Eof {
            break;
        }
    }
    rq.check_clean_eof().unwrap();
    assert_eq!(got, [(1, 2), (2, 3), (3, 0), (6, 1)]);
    // Once the writing began, nothing can be removed.
    let mut q = SendQueue::new();
    q.push(9, b"x", numbered(1), &[]).unwrap();
    let (c, _d) = UnixStream::pair().unwrap();
    q.write_to(c.as_fd()).unwrap();
    assert!(!q.remove_unsent(0, q.queued()));
}

/// The queue's accounting, and the two cases where a last frame cannot be taken back: the
/// only frame, nothing written, can go; a frame whose fd already rode ahead of its bytes (on
/// the `sendmsg` that carried the frame before it) cannot.
#[test]
fn the_send_queue_counts_and_keeps_frames_whose_fds_left() {
    let _check = fd_leak_check();
    let mut q = SendQueue::new();
    assert!(q.is_empty());
    q.push(1, b"only", numbered(1), &[]).unwrap();
    assert!(!q.is_empty());
    assert_eq!(q.pending_bytes() as u64, q.queued());
    assert_eq!(q.pending_fds(), 1);
    assert!(q.remove_unsent(0, q.queued()), "nothing of it was written");
    assert!(q.is_empty());
    assert_eq!((q.pending_bytes(), q.pending_fds()), (0, 0));

    // A large frame, then a small one with an fd; a socket too small for the first: the
    // first `sendmsg` writes part of the large frame and carries the small frame's fd.
    let (a, b) = UnixStream::pair().unwrap();
    rustix::net::sockopt::set_socket_send_buffer_size(&a, 4096).unwrap();
    a.set_nonblocking(true).unwrap();
    let mut q = SendQueue::new();
    q.push(2, &vec![7u8; 1 << 20], Vec::new(), &[]).unwrap();
    let start = q.queued();
    q.push(3, b"small", vec![OwnedFd::from(memfd(b"rode ahead"))], &[])
        .unwrap();
    let end = q.queued();
    assert!(!q.write_to(a.as_fd()).unwrap(), "the socket took it all");
    let written = q.written();
    assert!(written > 0 && written < start, "{written}");
    assert_eq!(q.pending_bytes() as u64, end - written);
    assert_eq!(q.pending_fds(), 0, "the fd went with the first sendmsg");
    assert!(
        !q.remove_unsent(start, end),
        "a frame whose fd was sent cannot be taken back"
    );
    // Everything arrives whole, the fd with its frame.
    a.set_nonblocking(false).unwrap();
    let writer = std::thread::spawn(move || {
        q.flush_blocking(a.as_fd()).unwrap();
        a
    });
    let mut rq = RecvQueue::new(&Settings::default());
    let mut got = Vec::new();
    while got.len() < 2 {
        while let Some(f) = rq.next_frame().unwrap() {
            got.push((
                f.frame.seqid,
                f.fds.iter().map(contents).collect::<Vec<_>>(),
            ));
        }
        if got.len() < 2 {
            rq.fill_blocking(b.as_fd()).unwrap();
        }
    }
    assert_eq!(got, [(2, vec![]), (3, vec![b"rode ahead".to_vec()])]);
    drop(writer.join().unwrap());
}

/// What a receive queue reports while a frame comes in pieces: the bytes and fds it holds,
/// when the last read returned, when it stalls if nothing more comes, and the end of stream.
#[test]
fn the_receive_queue_reports_what_it_holds_while_a_frame_comes_in_pieces() {
    let _check = fd_leak_check();
    let (a, b) = UnixStream::pair().unwrap();
    let fds = [memfd(b"first"), memfd(b"second"), memfd(b"next")];
    let mut frame = Vec::new();
    fdrpc::transport::frame::write_frame(&mut frame, 9, 2, 0, &[], b"two fds").unwrap();
    let mut rq = RecvQueue::new(&Settings::default());
    let stall = Duration::from_secs(30);
    assert_eq!(
        (rq.buffered_bytes(), rq.queued_fds(), rq.is_eof()),
        (0, 0, false)
    );
    assert_eq!(rq.last_read_at(), None);
    assert_eq!(rq.stall_deadline(stall), None);

    // Bytes alone: an incomplete frame stalls counting from its first byte, not its latest.
    let (c, d) = UnixStream::pair().unwrap();
    let mut alone = RecvQueue::new(&Settings::default());
    sendmsg_with(&c, &frame[..3], &[]);
    assert_eq!(alone.fill_blocking(d.as_fd()).unwrap(), Fill::Read(3));
    let first = alone.last_read_at().unwrap();
    assert_eq!(alone.stall_deadline(stall), Some(first + stall));
    sendmsg_with(&c, &frame[3..4], &[]);
    assert_eq!(alone.fill_blocking(d.as_fd()).unwrap(), Fill::Read(1));
    assert!(alone.last_read_at().unwrap() > first);
    assert_eq!(alone.stall_deadline(stall), Some(first + stall));
    // The frame's two fds in two reads, the second while the first is still queued: once the
    // frame claims both, nothing is pending and nothing can stall.
    sendmsg_with(&c, &frame[4..5], &[fds[0].as_fd()]);
    assert_eq!(alone.fill_blocking(d.as_fd()).unwrap(), Fill::Read(1));
    sendmsg_with(&c, &frame[5..], &[fds[1].as_fd()]);
    assert_eq!(
        alone.fill_blocking(d.as_fd()).unwrap(),
        Fill::Read(frame.len() - 5)
    );
    assert_eq!(alone.queued_fds(), 2);
    assert_eq!(alone.next_frame().unwrap().unwrap().fds.len(), 2);
    assert_eq!((alone.buffered_bytes(), alone.queued_fds()), (0, 0));
    assert_eq!(alone.stall_deadline(stall), None);
    drop((alone, c, d));

    // The first 5 bytes, with its two fds and one for the next frame.
    let before = Instant::now();
    sendmsg_with(
        &a,
        &frame[..5],
        &[fds[0].as_fd(), fds[1].as_fd(), fds[2].as_fd()],
    );
    assert_eq!(rq.fill_blocking(b.as_fd()).unwrap(), Fill::Read(5));
    let after = Instant::now();
    assert_eq!((rq.buffered_bytes(), rq.queued_fds()), (5, 3));
    let read_at = rq.last_read_at().expect("a read brought bytes");
    assert!(before <= read_at && read_at <= after);
    let stalls_at = rq.stall_deadline(stall).expect("a frame is incomplete");
    assert!(before + stall <= stalls_at && stalls_at <= after + stall);
    assert!(rq.next_frame().unwrap().is_none());

    // The rest, and the first byte of the next frame (which claims the third fd).
    let mut next = Vec::new();
    fdrpc::transport::frame::write_frame(&mut next, 10, 1, 2, &[], b"one fd").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let fill_exactly = |rq: &mut RecvQueue, want: usize| {
        let mut read = 0;
        while read < want {
            match rq.fill_until(b.as_fd(), Some(deadline)).unwrap() {
                Fill::Read(n) => read += n,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(read, want);
    };
    sendmsg_with(&a, &[&frame[5..], &next[..1]].concat(), &[]);
    fill_exactly(&mut rq, frame.len() - 5 + 1);
    assert_eq!(rq.buffered_bytes(), frame.len() + 1);
    let got = rq.next_frame().unwrap().expect("the whole frame");
    assert_eq!(got.frame.payload, b"two fds");
    assert_eq!(
        got.fds.iter().map(ino).collect::<Vec<_>>(),
        fds[..2].iter().map(ino).collect::<Vec<_>>()
    );
    drop(got);
    assert_eq!((rq.buffered_bytes(), rq.queued_fds()), (1, 1));
    // The next frame's first byte came with the last read, its fd with the first: the
    // connection stalls counting from the older of the two.
    let second_read = rq.last_read_at().unwrap();
    assert!(second_read > read_at);
    assert_eq!(rq.stall_deadline(stall), Some(read_at + stall));

    // The rest of that frame and one byte of a third: the fd is claimed, and the byte left
    // over stalls from the read it came with.
    sendmsg_with(&a, &[&next[1..], &next[..1]].concat(), &[]);
    fill_exactly(&mut rq, next.len());
    let got = rq.next_frame().unwrap().expect("the second frame");
    assert_eq!(got.frame.payload, b"one fd");
    assert_eq!(ino(&got.fds[0]), ino(&fds[2]));
    drop(got);
    assert_eq!((rq.buffered_bytes(), rq.queued_fds()), (1, 0));
    let third_read = rq.last_read_at().unwrap();
    assert!(third_read > second_read);
    assert_eq!(rq.stall_deadline(stall), Some(third_read + stall));

    // A byte of a frame left: at the end of the stream (its bytes counted from the frame's
    // start, not the buffer's).
    assert!(matches!(
        rq.check_clean_eof(),
        Err(fdrpc::TransportError::ClosedMidFrame(1))
    ));
    drop(a);
    assert_eq!(rq.fill_blocking(b.as_fd()).unwrap(), Fill::Eof);
    assert!(rq.is_eof());
    assert!(matches!(
        rq.check_clean_eof(),
        Err(fdrpc::TransportError::ClosedMidFrame(1))
    ));
}

/// A read that fails reports the error; only "would block" means "nothing yet".
#[test]
fn a_failed_read_is_an_error_not_a_wait() {
    let _check = fd_leak_check();
    let enotsock = |err: &fdrpc::TransportError| match err {
        fdrpc::TransportError::Io(e) => {
            e.raw_os_error() == Some(rustix::io::Errno::NOTSOCK.raw_os_error())
        }
        _ => false,
    };
    // Not a socket: `recvmsg` fails with ENOTSOCK.
    let not_a_socket = memfd(b"not a socket");
    let mut rq = RecvQueue::new(&Settings::default());
    let err = rq.fill(not_a_socket.as_fd()).unwrap_err();
    assert!(enotsock(&err), "{err}");
    // The waiting reads report it too, rather than wait for the fd to become readable.
    let (mut rq, not_a_socket, errors) = finishes_within(Duration::from_secs(10), move || {
        let deadline = Instant::now() + Duration::from_secs(5);
        let errors = [
            rq.fill_until(not_a_socket.as_fd(), Some(deadline))
                .unwrap_err(),
            rq.fill_blocking(not_a_socket.as_fd()).unwrap_err(),
        ];
        (rq, not_a_socket, errors)
    });
    for err in errors {
        assert!(enotsock(&err), "{err}");
    }
    // A socket with nothing to read: would block.
    let (a, b) = UnixStream::pair().unwrap();
    b.set_nonblocking(true).unwrap();
    assert_eq!(rq.fill(b.as_fd()).unwrap(), Fill::WouldBlock);
    drop((rq, a, b, not_a_socket));
}

/// Runs `f` on a thread and returns what it returns; fails if it takes longer than `limit`
/// (the thread is left behind: a hang fails the test instead of stalling it).
fn finishes_within<T: Send + 'static>(
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(value) => value,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("did not finish within {limit:?}")
        }
        // It panicked: pass its panic on.
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match thread.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the thread sent nothing and did not panic"),
        },
    }
}

/// A frame that declares fds must say where they start in the fd stream (`fdrpc-fd-seq`).
#[test]
fn a_frame_with_fds_but_no_sequence_number_breaks_the_stream() {
    let _check = fd_leak_check();
    let (a, b) = UnixStream::pair().unwrap();
    let fd = memfd(b"one");
    let mut frame = Vec::new();
    fdrpc::transport::frame::write_frame(&mut frame, 1, 0, 0, &[("fdrpc-fds", "1")], b"x").unwrap();
    sendmsg_with(&a, &frame, &[fd.as_fd()]);
    let mut rq = RecvQueue::new(&Settings::default());
    rq.fill_blocking(b.as_fd()).unwrap();
    let err = rq.next_frame().unwrap_err();
    assert!(
        matches!(
            err,
            fdrpc::TransportError::Frame(fdrpc::FrameError::BadFdHeader {
                key: "fdrpc-fd-seq"
            })
        ),
        "{err}"
    );
    drop((rq, a, b, fd));
}

/// A blocking flush to a peer that is gone fails with the socket's error instead of waiting
/// for room that will never come; one to a peer that reads late waits for it without
/// spinning.
#[test]
fn a_blocking_flush_fails_on_a_closed_peer_and_waits_quietly_on_a_slow_one() {
    let _check = fd_leak_check();
    let (a, b) = UnixStream::pair().unwrap();
    drop(b);
    // On a thread, so that a flush that never ends fails the test.
    finishes_within(Duration::from_secs(10), move || {
        let mut q = SendQueue::new();
        q.push(1, b"to nobody", Vec::new(), &[]).unwrap();
        let err = q.flush_blocking(a.as_fd()).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe, "{err}");
    });

    // A full socket buffer, and a reader that starts 300 ms later: the flush waits (in
    // `poll`), taking little CPU time for its 300 ms.
    let (a, b) = UnixStream::pair().unwrap();
    let big = vec![5u8; 4 << 20];
    let reader = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let mut sink = Vec::new();
        std::io::Read::read_to_end(&mut &b, &mut sink).unwrap();
        sink.len()
    });
    finishes_within(Duration::from_secs(10), move || {
        let mut q = SendQueue::new();
        q.push(1, &big, Vec::new(), &[]).unwrap();
        let (wall, cpu) = (Instant::now(), thread_cpu_time());
        q.flush_blocking(a.as_fd()).unwrap();
        let (wall, cpu) = (wall.elapsed(), thread_cpu_time() - cpu);
        assert!(wall >= Duration::from_millis(250), "{wall:?}");
        assert!(
            cpu < wall / 3,
            "{cpu:?} of CPU in {wall:?}: the flush spins"
        );
    });
    assert!(reader.join().unwrap() > 4 << 20);
}

/// The CPU time this thread has used.
fn thread_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// A signal whose handler was installed without `SA_RESTART` interrupts a blocking
/// `recvmsg` or `poll` (EINTR): the read goes on waiting and returns what comes.
#[test]
fn a_signal_does_not_break_a_blocking_read() {
    use std::os::unix::thread::JoinHandleExt;
    extern "C" fn ignore(_: libc::c_int) {}
    // SAFETY: installs a handler that does nothing for SIGUSR1, which nothing else in this
    // test binary uses; `sa_flags` 0 leaves out SA_RESTART, so interrupted calls fail with
    // EINTR instead of restarting.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = ignore as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = 0;
        assert_eq!(
            libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()),
            0
        );
    }
    let _check = fd_leak_check();
    for until in [None, Some(Duration::from_secs(10))] {
        let (a, b) = UnixStream::pair().unwrap();
        let reader = std::thread::spawn(move || {
            let mut rq = RecvQueue::new(&Settings::default());
            match until {
                None => rq.fill_blocking(b.as_fd()).map_err(|e| e.to_string()),
                Some(limit) => rq
                    .fill_until(b.as_fd(), Some(Instant::now() + limit))
                    .map_err(|e| e.to_string()),
            }
        });
        // Signals for 100 ms while the reader waits, then a byte.
        for _ in 0..20 {
            // SAFETY: the thread is alive (joined below).
            unsafe { libc::pthread_kill(reader.as_pthread_t(), libc::SIGUSR1) };
            std::thread::sleep(Duration::from_millis(5));
        }
        std::io::Write::write_all(&mut &a, b"x").unwrap();
        let got = finishes_within(Duration::from_secs(10), move || reader.join().unwrap());
        assert_eq!(got, Ok(Fill::Read(1)), "waiting {until:?}");
    }
}
