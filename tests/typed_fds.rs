//! Fd types that say what the fd must be are checked on arrival.

mod common;

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixDatagram, UnixStream};

use common::*;
use fdrpc::{Directory, Fifo, RegularFile, SealedMemfd, StreamSocket, seals};

#[derive(fdrpc::Message)]
struct Any {
    fd: OwnedFd,
}

fn send_as<T: fdrpc::Message>(fd: impl Into<OwnedFd>) -> Result<T, fdrpc::DecodeError> {
    let (bytes, fds) = fdrpc::encode(Any { fd: fd.into() }).unwrap();
    fdrpc::decode(&bytes, fds)
}

#[derive(fdrpc::Message, Debug)]
struct WantsFile {
    fd: RegularFile,
}
#[derive(fdrpc::Message, Debug)]
struct WantsDir {
    fd: Directory,
}
#[derive(fdrpc::Message, Debug)]
struct WantsFifo {
    fd: Fifo,
}
#[derive(fdrpc::Message, Debug)]
struct WantsStream {
    fd: StreamSocket,
}
#[derive(fdrpc::Message, Debug)]
struct WantsUnixStream {
    fd: UnixStream,
}
#[derive(fdrpc::Message, Debug)]
struct WantsReader {
    fd: std::io::PipeReader,
}
#[derive(fdrpc::Message, Debug)]
struct WantsSealed {
    fd: SealedMemfd,
}
#[derive(fdrpc::Message, Debug)]
struct WantsShrinkSealed {
    fd: SealedMemfd<{ seals::SHRINK }>,
}

fn mismatch(e: fdrpc::DecodeError) -> (String, String) {
    assert_eq!(e.path(), "fd");
    match e.kind() {
        fdrpc::DecodeErrorKind::FdKindMismatch { expected, found } => {
            (expected.clone(), found.clone())
        }
        other => panic!("expected a kind mismatch, got {other:?}"),
    }
}

/// Each typed field accepts its kind, and holds the very file that was sent.
#[test]
fn right_kinds_are_accepted() {
    let _check = fd_leak_check();
    let exe = File::open("/proc/self/exe").unwrap();
    let id = ino(&exe);
    assert_eq!(ino(&send_as::<WantsFile>(exe).unwrap().fd), id);
    let root = File::open("/").unwrap();
    let id = ino(&root);
    assert_eq!(ino(&send_as::<WantsDir>(root).unwrap().fd), id);
    let (r, w) = std::io::pipe().unwrap();
    let (rid, wid) = (ino(&r), ino(&w));
    let w = send_as::<WantsFifo>(w).unwrap().fd;
    assert_eq!(ino(&w), wid);
    let r = send_as::<WantsReader>(r).unwrap().fd;
    assert_eq!(ino(&r), rid);
    let (a, b) = UnixStream::pair().unwrap();
    let (aid, bid) = (ino(&a), ino(&b));
    let a = send_as::<WantsStream>(a).unwrap().fd;
    assert_eq!(ino(&a), aid);
    let b = send_as::<WantsUnixStream>(b).unwrap().fd;
    assert_eq!(ino(&b), bid);
    // The pair still works end to end after the trip.
    std::io::Write::write_all(&mut &b, b"ping").unwrap();
    let mut got = [0u8; 4];
    std::io::Read::read_exact(&mut &File::from(OwnedFd::from(a)), &mut got).unwrap();
    assert_eq!(&got, b"ping");
    let sealed = SealedMemfd::<{ seals::IMMUTABLE }>::with_contents("x", b"data").unwrap();
    let got = send_as::<WantsSealed>(sealed).unwrap();
    assert_eq!(got.fd.read_all().unwrap(), b"data");
    assert_eq!(
        (got.fd.len().unwrap(), got.fd.is_empty().unwrap()),
        (4, false)
    );
    let mut read = Vec::new();
    std::io::Read::read_to_end(&mut &got.fd, &mut read).unwrap();
    assert_eq!(read, b"data");
    let sealed = SealedMemfd::<{ seals::IMMUTABLE }>::with_contents("x", b"shrink").unwrap();
    let got = send_as::<WantsShrinkSealed>(sealed).unwrap();
    assert_eq!(got.fd.read_all().unwrap(), b"shrink");
    drop((w, r));
}

#[test]
fn a_pipe_where_a_regular_file_is_required() {
    let _check = fd_leak_check();
    let (r, _w) = std::io::pipe().unwrap();
    let (expected, found) = mismatch(send_as::<WantsFile>(r).unwrap_err());
    assert_eq!(
        (expected.as_str(), found.as_str()),
        ("a regular file", "a pipe")
    );
}

#[test]
fn wrong_kinds_are_rejected() {
    let _check = fd_leak_check();
    let (_, found) = mismatch(send_as::<WantsDir>(memfd(b"")).unwrap_err());
    assert_eq!(found, "a regular file");
    let (a, _b) = UnixDatagram::pair().unwrap();
    let (expected, found) = mismatch(send_as::<WantsStream>(a).unwrap_err());
    assert_eq!(
        (expected.as_str(), found.as_str()),
        ("a stream socket", "a datagram socket")
    );
    let (_r, w) = std::io::pipe().unwrap();
    let (expected, _) = mismatch(send_as::<WantsReader>(w).unwrap_err());
    assert_eq!(expected, "the read end of a pipe");
    let (expected, _) = mismatch(send_as::<WantsUnixStream>(memfd(b"")).unwrap_err());
    assert_eq!(expected, "a unix stream socket");
}

#[test]
fn a_memfd_without_the_required_seals() {
    let _check = fd_leak_check();
    let unsealed = rustix::fs::memfd_create(
        "x",
        rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING,
    )
    .unwrap();
    let (expected, found) = mismatch(send_as::<WantsSealed>(unsealed).unwrap_err());
    assert_eq!(
        expected,
        "a memfd sealed with F_SEAL_SEAL|F_SEAL_SHRINK|F_SEAL_GROW|F_SEAL_WRITE"
    );
    assert_eq!(found, "a memfd sealed with no seals");

    let partly = SealedMemfd::<{ seals::SHRINK }>::with_contents("x", b"d").unwrap();
    let (_, found) = mismatch(send_as::<WantsSealed>(partly).unwrap_err());
    assert_eq!(found, "a memfd sealed with F_SEAL_SHRINK");

    // Not sealable at all: a memfd created without ALLOW_SEALING carries F_SEAL_SEAL only,
    // and a plain file cannot be sealed.
    let (_, found) =
        mismatch(send_as::<WantsSealed>(File::open("/proc/self/exe").unwrap()).unwrap_err());
    assert_eq!(found, "a regular file");
}

#[test]
fn constructors_check_too() {
    let _check = fd_leak_check();
    let (r, _w) = std::io::pipe().unwrap();
    let err = RegularFile::new(r).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(Directory::new(File::open("/").unwrap()).is_ok());
    assert!(SealedMemfd::<{ seals::WRITE }>::new(memfd(b"")).is_err());
}

#[test]
fn a_sealed_memfd_maps_read_only_and_an_unsealed_one_is_refused() {
    let _check = fd_leak_check();
    let sealed =
        fdrpc::SealedMemfd::<{ fdrpc::seals::IMMUTABLE }>::with_contents("m", b"mapped").unwrap();
    let map = sealed.map().unwrap();
    assert_eq!(&map[..], b"mapped");
    // The mapping outlives the fd it came from, and crosses threads.
    drop(sealed);
    let len = std::thread::spawn(move || map.len()).join().unwrap();
    assert_eq!(len, 6);
    // Without both SHRINK and WRITE, the bytes could change or vanish under a `&[u8]`.
    for refused in [
        fdrpc::SealedMemfd::<{ fdrpc::seals::GROW }>::with_contents("g", b"x")
            .unwrap()
            .map(),
        fdrpc::SealedMemfd::<{ fdrpc::seals::SHRINK | fdrpc::seals::FUTURE_WRITE }>::with_contents(
            "f", b"x",
        )
        .unwrap()
        .map(),
    ] {
        assert_eq!(
            refused.unwrap_err().kind(),
            std::io::ErrorKind::PermissionDenied
        );
    }
    let empty = fdrpc::SealedMemfd::<{ fdrpc::seals::IMMUTABLE }>::with_contents("e", b"").unwrap();
    assert!(empty.is_empty().unwrap());
    assert!(empty.map().unwrap().is_empty());
    // A mapping is unmapped when dropped (a name no other test uses: /proc/self/maps is
    // the whole process's).
    let sealed = fdrpc::SealedMemfd::<{ fdrpc::seals::IMMUTABLE }>::with_contents(
        "typed-fds-unmapped",
        b"as bytes",
    )
    .unwrap();
    let map = sealed.map().unwrap();
    assert_eq!(AsRef::<[u8]>::as_ref(&map), b"as bytes");
    assert_eq!(mapped_as("typed-fds-unmapped"), 1);
    drop(map);
    assert_eq!(mapped_as("typed-fds-unmapped"), 0);
}

#[test]
fn a_memfd_written_in_place_is_sealed_for_good() {
    use std::io::Write;
    let _check = fd_leak_check();
    let mut w = fdrpc::SealedMemfd::<{ fdrpc::seals::IMMUTABLE }>::writer("w", 1 << 20).unwrap();
    assert_eq!(w.len(), 1 << 20);
    assert!(w.iter().all(|&b| b == 0));
    for (i, b) in w.iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    let sealed = w.seal().unwrap();
    let seals = rustix::fs::fcntl_get_seals(&sealed).unwrap();
    assert!(seals.contains(rustix::fs::SealFlags::from_bits_retain(
        fdrpc::seals::IMMUTABLE
    )));
    assert_eq!(sealed.len().unwrap(), 1 << 20);
    let map = sealed.map().unwrap();
    assert!(map.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
    // Nobody can write or resize it now, this process included.
    assert!(sealed.as_file().write(b"x").is_err());
    assert!(sealed.as_file().set_len(0).is_err());
    // It travels as a sealed memfd, checked on arrival.
    let (bytes, fds) = fdrpc::encode(sealed).unwrap();
    let back: fdrpc::SealedMemfd = fdrpc::decode(&bytes, fds).unwrap();
    assert_eq!(back.map().unwrap()[250], 250);
    // A writer dropped unsealed unmaps its memory (a name no other test uses).
    let w = fdrpc::SealedMemfd::<{ fdrpc::seals::IMMUTABLE }>::writer("typed-fds-w", 4096).unwrap();
    assert_eq!(mapped_as("typed-fds-w"), 1);
    drop(w);
    assert_eq!(mapped_as("typed-fds-w"), 0);
}

/// How many mappings of this process map the memfd named `name`.
fn mapped_as(name: &str) -> usize {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let needle = format!("/memfd:{name} ");
    maps.lines().filter(|l| l.contains(&needle)).count()
}
