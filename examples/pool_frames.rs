//! Images of 4 MiB streamed from a producer process to a consumer through a shared-memory
//! pool: the pool (one sealed memfd of four 4 MiB slots) crosses the socket once; after that
//! only 40-byte names of buffers do, and each buffer comes back to the producer when the
//! consumer drops its view. No page is allocated and no fd opened per frame: the consumer's
//! memory and fd count stay flat however long it runs.
//!
//! ```text
//! cargo run --release --example pool_frames [FRAMES]
//! ```
//!
//! The process serves a `Camera` service to a copy of itself it starts as the consumer (the
//! connection passed as fd 3, `fdrpc::child`). The consumer maps the pool, takes a stream of
//! frames, checks each (a checksum read through the pool's copy-out, which stays sound even
//! against a producer that writes a frame while it is read), and checks that its resident
//! memory and fd count after the last frame are what they were after the tenth.

use std::time::{Duration, Instant};

use fdrpc::{Pool, PoolBuffer, SharedPool, Stream};
use futures::StreamExt;

/// An image's size.
pub const FRAME: usize = 4 << 20;
/// Slots in the producer's pool: frames the consumer may hold at once before the producer
/// waits.
pub const SLOTS: u32 = 4;

#[fdrpc::service]
pub trait Camera {
    /// The producer's pool, shared with this consumer (once).
    async fn attach(&self) -> SharedPool;
    /// `count` frames of the pool, frame `i` filled with the pattern of `i`.
    async fn frames(&self, count: u32) -> Stream<PoolBuffer>;
}

/// The 64-bit word at word `w` of frame `i`.
pub fn pattern(i: u32, w: usize) -> u64 {
    (w as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(i)
}

/// What the consumer computes over frame `i` and the producer's pattern gives.
pub fn expected_sum(i: u32) -> u64 {
    (0..FRAME / 8).fold(0u64, |s, w| s.wrapping_add(pattern(i, w)))
}

/// The producer: one pool per consumer.
#[derive(Default)]
pub struct CameraImpl {
    pool: std::sync::Mutex<Option<Pool>>,
}

impl Camera for CameraImpl {
    async fn attach(&self) -> SharedPool {
        let pool = Pool::new("camera", FRAME, SLOTS).expect("a pool");
        let shared = pool.share().expect("shared once");
        *self.pool.lock().unwrap() = Some(pool);
        shared
    }

    async fn frames(&self, count: u32) -> Stream<PoolBuffer> {
        let pool = self.pool.lock().unwrap().clone().expect("attach first");
        Stream::from_stream(futures::stream::unfold(0u32, move |i| {
            let pool = pool.clone();
            async move {
                if i == count {
                    return None;
                }
                // A free slot: one the consumer gave back, waited for without blocking.
                let mut buf =
                    match tokio::time::timeout(Duration::from_secs(30), pool.buffer()).await {
                        Ok(Ok(buf)) => buf,
                        _ => {
                            eprintln!("camera: the consumer kept every frame for 30 s");
                            return None;
                        }
                    };
                for (w, word) in buf[..FRAME].chunks_exact_mut(8).enumerate() {
                    word.copy_from_slice(&pattern(i, w).to_ne_bytes());
                }
                Some((buf.lend(FRAME).expect("fits its slot"), i + 1))
            }
        }))
    }
}

/// This process's resident memory (KiB) and open fds.
fn footprint() -> (u64, usize) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count);
    (rss, fds)
}

/// The consumer: maps the pool, checks `count` frames, and checks that its footprint stays
/// flat. Returns the frames checked.
pub async fn consume(client: &CameraClient, count: u32) -> Result<u32, Box<dyn std::error::Error>> {
    let pool = client.attach().await?.map()?;
    let mut frames = client.frames(count).await?;
    let start = Instant::now();
    let mut after_ten = None;
    let mut i = 0;
    while let Some(frame) = frames.next().await {
        let view = pool.open(frame?)?;
        let mut sum = 0u64;
        view.for_each_chunk(|chunk| {
            for word in chunk.chunks_exact(8) {
                sum = sum.wrapping_add(u64::from_ne_bytes(word.try_into().unwrap_or_default()));
            }
        });
        if view.len() != FRAME || sum != expected_sum(i) {
            return Err(format!("frame {i} is not what was written").into());
        }
        drop(view); // the slot goes back to the producer
        i += 1;
        if i == 10 {
            after_ten = Some(footprint());
        }
    }
    let elapsed = start.elapsed();
    println!(
        "consumer: {i} frames of 4 MiB in {elapsed:.2?} ({:.0} MiB/s, checks included)",
        f64::from(i) * 4.0 / elapsed.as_secs_f64()
    );
    if let Some((rss, fds)) = after_ten {
        let (rss_end, fds_end) = footprint();
        println!(
            "consumer: after frame 10 {rss} KiB and {fds} fds; after frame {i} {rss_end} KiB and {fds_end} fds"
        );
        if fds_end != fds || rss_end > rss + 8 * 1024 {
            return Err("the consumer's footprint grew".into());
        }
    }
    Ok(i)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let count: u32 = match args.get(1).map(String::as_str) {
        Some("consumer") => {
            let count = args.get(2).and_then(|c| c.parse().ok()).unwrap_or(256);
            return consumer(count);
        }
        Some(n) => n.parse()?,
        None => 256,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.args(["consumer", &count.to_string()]);
    let (mut child, conn) = fdrpc::child::spawn(&mut cmd)?;
    runtime.block_on(
        fdrpc::Server::new().serve_connection(conn, CameraServer::new(CameraImpl::default())),
    )?;
    let status = child.wait()?;
    if !status.success() {
        return Err(format!("the consumer failed: {status}").into());
    }
    println!("producer: the consumer took {count} frames");
    Ok(())
}

/// The consumer process: its connection is fd 3.
fn consumer(count: u32) -> Result<(), Box<dyn std::error::Error>> {
    let conn = fdrpc::child::connection()?.ok_or("not started by fdrpc::child::spawn")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = CameraClient::new(fdrpc::Client::from_std(conn)?);
        let took = consume(&client, count).await?;
        if took != count {
            return Err(format!("{took} of {count} frames arrived").into());
        }
        Ok(())
    })
}
