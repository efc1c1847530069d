//! Frames of 1 MiB moved between two processes through sealed memfds: written once, in
//! place, by the producer ([`fdrpc::MemfdWriter`]), read in place by the consumer
//! ([`fdrpc::SealedMemfd::map`]), copied by nobody and with no `unsafe`.
//!
//! ```text
//! cargo run --release --example shared_memory [FRAMES]
//! ```
//!
//! The process serves a `Frames` service to a copy of itself it starts as a worker (the
//! connection passed as fd 3, `fdrpc::child`). The worker asks for a stream of frames, checks
//! each one where it lies, and sends back a checksum of each through a sink; the parent
//! checks the sums.

use std::time::Instant;

use fdrpc::{SealedMemfd, Stream, U64Bits};
use futures::StreamExt;

/// A frame's size.
pub const FRAME: usize = 1 << 20;

#[fdrpc::service]
pub trait Frames {
    /// `count` frames, frame `i` filled with the byte pattern of `i`.
    async fn frames(&self, count: u32) -> Stream<SealedMemfd>;
    /// Checks the checksums of frames 0.. in order; returns how many were right.
    async fn report(&self, sums: Stream<U64Bits>) -> u32;
}

/// The byte at `offset` of frame `i`.
pub fn pattern(i: u32, offset: usize) -> u8 {
    (offset as u32).wrapping_mul(31).wrapping_add(i) as u8
}

/// FNV-1a over the frame: what the consumer reports and the producer expects.
pub fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Makes frame `i`: a memfd mapped writable, filled in place, then sealed.
pub fn make_frame(i: u32) -> std::io::Result<SealedMemfd> {
    let mut frame = SealedMemfd::<{ fdrpc::seals::IMMUTABLE }>::writer("frame", FRAME)?;
    for (offset, b) in frame.iter_mut().enumerate() {
        *b = pattern(i, offset);
    }
    frame.seal()
}

#[derive(Debug, Default)]
pub struct FramesImpl;

impl Frames for FramesImpl {
    async fn frames(&self, count: u32) -> Stream<SealedMemfd> {
        // Each frame is made when the consumer has credit for it.
        Stream::iter((0..count).map_while(|i| match make_frame(i) {
            Ok(frame) => Some(frame),
            Err(e) => {
                eprintln!("shared_memory: cannot make frame {i}: {e}");
                None
            }
        }))
    }

    async fn report(&self, mut sums: Stream<U64Bits>) -> u32 {
        let mut right = 0;
        let mut i = 0;
        while let Some(Ok(sum)) = sums.next().await {
            let expected = checksum(&(0..FRAME).map(|o| pattern(i, o)).collect::<Vec<_>>());
            if *sum == expected {
                right += 1;
            }
            i += 1;
        }
        right
    }
}

/// The worker's side: takes `count` frames, checks each in place, reports the checksums.
/// Returns how many the server found right.
pub async fn consume(client: &FramesClient, count: u32) -> Result<u32, Box<dyn std::error::Error>> {
    let mut frames = client.frames(count).await?;
    let mut sums = Vec::with_capacity(count as usize);
    let start = Instant::now();
    let mut i = 0;
    while let Some(frame) = frames.next().await {
        let map = frame?.map()?;
        if map.len() != FRAME || map.iter().enumerate().any(|(o, &b)| b != pattern(i, o)) {
            return Err(format!("frame {i} is not what was written").into());
        }
        sums.push(U64Bits(checksum(&map)));
        i += 1;
    }
    let elapsed = start.elapsed();
    let mib = f64::from(i);
    println!(
        "worker: {i} frames of 1 MiB read in place in {elapsed:.2?} ({:.0} MiB/s, checks included)",
        mib / elapsed.as_secs_f64()
    );
    Ok(client.report(Stream::iter(sums)).await?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let count: u32 = match args.get(1).map(String::as_str) {
        Some("worker") => {
            let count = args.get(2).and_then(|c| c.parse().ok()).unwrap_or(64);
            return worker(count);
        }
        Some(n) => n.parse()?,
        None => 64,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.args(["worker", &count.to_string()]);
    let (mut child, conn) = fdrpc::child::spawn(&mut cmd)?;
    runtime.block_on(fdrpc::Server::new().serve_connection(conn, FramesServer::new(FramesImpl)))?;
    let status = child.wait()?;
    if !status.success() {
        return Err(format!("the worker failed: {status}").into());
    }
    println!("parent: the worker took {count} frames");
    Ok(())
}

/// The worker process: its connection is fd 3.
fn worker(count: u32) -> Result<(), Box<dyn std::error::Error>> {
    let conn = fdrpc::child::connection()?.ok_or("not started by fdrpc::child::spawn")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = FramesClient::new(fdrpc::Client::from_std(conn)?);
        let right = consume(&client, count).await?;
        if right != count {
            return Err(format!("{right} of {count} checksums were right").into());
        }
        println!("worker: all {count} checksums right");
        Ok(())
    })
}
