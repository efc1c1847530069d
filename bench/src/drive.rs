//! How a case is timed: a warm-up of a tenth of the run, then either each call timed one after
//! another, or calls kept in flight `window` at a time. Every library's cases use these, so
//! fdrpc and its baselines are measured the same way.

use std::future::Future;
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::stats::Sample;

/// Runs `one` `iters / 10` times to warm up, then `iters` times, timing each.
pub fn latencies(iters: usize, mut one: impl FnMut()) -> Sample {
    crate::counts::add_ops(iters / 10);
    for _ in 0..iters / 10 {
        one();
    }
    let mut lat = Vec::with_capacity(iters);
    let start = Instant::now();
    for _ in 0..iters {
        let t = Instant::now();
        one();
        lat.push(t.elapsed());
    }
    Sample::from_latencies(lat, start.elapsed())
}

/// [`latencies`] for an async call.
pub async fn latencies_async<Fut: Future<Output = ()>>(
    iters: usize,
    mut one: impl FnMut() -> Fut,
) -> Sample {
    crate::counts::add_ops(iters / 10);
    for _ in 0..iters / 10 {
        one().await;
    }
    let mut lat = Vec::with_capacity(iters);
    let start = Instant::now();
    for _ in 0..iters {
        let t = Instant::now();
        one().await;
        lat.push(t.elapsed());
    }
    Sample::from_latencies(lat, start.elapsed())
}

/// Runs `call` `iters / 10` times to warm up, then `iters` times, `window` calls in flight at
/// once; the sample is the throughput of the second run.
pub async fn in_flight<Fut: Future<Output = ()>>(
    iters: usize,
    window: usize,
    call: impl Fn() -> Fut,
) -> Sample {
    crate::counts::add_ops(iters / 10);
    concurrent(iters / 10, window, &call).await;
    Sample::throughput(iters, concurrent(iters, window, &call).await)
}

/// `total` calls, `window` in flight at once (no warm-up): for cases that time themselves.
pub async fn concurrent_calls<Fut: Future<Output = ()>>(
    total: usize,
    window: usize,
    call: impl Fn() -> Fut,
) -> Duration {
    concurrent(total, window, &call).await
}

async fn concurrent<Fut: Future<Output = ()>>(
    total: usize,
    window: usize,
    call: &impl Fn() -> Fut,
) -> Duration {
    let start = Instant::now();
    let mut running = futures::stream::FuturesUnordered::new();
    let mut issued = 0;
    while issued < total.min(window) {
        running.push(call());
        issued += 1;
    }
    while running.next().await.is_some() {
        if issued < total {
            running.push(call());
            issued += 1;
        }
    }
    start.elapsed()
}

/// Runs `one` `iters / 10` times to warm up, then `iters` times spread over `threads` threads
/// (each with its own clone of the state `one` uses); the sample is the throughput of the
/// second run.
pub fn on_threads<C: Clone + Send>(iters: usize, threads: usize, state: C, one: fn(&C)) -> Sample {
    let run = |total: usize| {
        let start = Instant::now();
        std::thread::scope(|s| {
            for t in 0..threads {
                let state = state.clone();
                let mine = total / threads + usize::from(t < total % threads);
                s.spawn(move || {
                    for _ in 0..mine {
                        one(&state);
                    }
                });
            }
        });
        start.elapsed()
    };
    crate::counts::add_ops(iters / 10);
    run(iters / 10);
    Sample::throughput(iters, run(iters))
}
