//! What an operation costs besides time, counted on each side: heap allocations (a counting
//! global allocator), system calls (the kernel's `raw_syscalls` and `syscalls` tracepoints,
//! through `perf_event_open`), and sleeps (voluntary context switches, from `getrusage`).
//!
//! The client counts around its run of a case; the server (a child process) counts over its
//! whole life and reports when it exits, to the file `FDRPC_BENCH_COUNTS` names. Both are
//! divided by the operations the case performed, warm-up included ([`add_ops`]): the
//! server's start-up (a runtime, a listener) is in its figure, a few hundred allocations over
//! tens of thousands of operations. A server that is killed rather than ending reports
//! nothing; without tracepoint access (`perf_event_paranoid`, no tracefs) there are no
//! syscall counts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The system allocator, counting allocations.
pub struct CountingAlloc;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static OPS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        // SAFETY: as the caller's contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        // SAFETY: as the caller's contract.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        // SAFETY: as the caller's contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as the caller's contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Counts `n` operations of the case being run (the drive functions call it).
pub fn add_ops(n: usize) {
    OPS.fetch_add(n as u64, Relaxed);
}

/// The tracepoints counted, by name under /sys/kernel/tracing/events; several ids add up
/// to one figure (`epoll_wait` and `epoll_pwait`).
const EVENTS: [(&str, &[&str]); 5] = [
    ("syscalls", &["raw_syscalls/sys_enter"]),
    ("sendmsg", &["syscalls/sys_enter_sendmsg"]),
    ("recvmsg", &["syscalls/sys_enter_recvmsg"]),
    (
        "epoll_wait",
        &[
            "syscalls/sys_enter_epoll_wait",
            "syscalls/sys_enter_epoll_pwait",
        ],
    ),
    ("futex", &["syscalls/sys_enter_futex"]),
];

/// What one side did over a run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Totals {
    pub allocs: u64,
    /// As [`EVENTS`]; `None` without tracepoint access.
    pub syscalls: Option<[u64; 5]>,
    /// Voluntary context switches: how often a thread slept.
    pub sleeps: u64,
    /// Operations of the case (the client's count; the server's totals are divided by it).
    pub ops: u64,
}

impl Totals {
    /// `self - earlier`.
    fn since(self, earlier: Totals) -> Totals {
        Totals {
            allocs: self.allocs - earlier.allocs,
            syscalls: self.syscalls,
            sleeps: self.sleeps - earlier.sleeps,
            ops: self.ops - earlier.ops,
        }
    }

    fn line(&self) -> String {
        let sys = self
            .syscalls
            .map(|s| s.map(|v| v.to_string()).join(" "))
            .unwrap_or_else(|| "-".into());
        format!("{} {} {}", self.allocs, self.sleeps, sys)
    }

    fn parse(line: &str) -> Option<Totals> {
        let mut it = line.split_whitespace();
        let allocs = it.next()?.parse().ok()?;
        let sleeps = it.next()?.parse().ok()?;
        let rest: Vec<u64> = it.filter_map(|v| v.parse().ok()).collect();
        Some(Totals {
            allocs,
            sleeps,
            syscalls: rest.try_into().ok(),
            ops: 0,
        })
    }
}

/// Open tracepoint counters of this thread and the threads and processes it starts from now
/// on (`inherit`); they read once those have ended.
pub struct Counters(Option<Vec<Vec<OwnedFd>>>);

impl Counters {
    /// Starts counting; without access, counts allocations and sleeps only.
    pub fn start() -> (Counters, Totals) {
        let fds = EVENTS
            .iter()
            .map(|(_, ids)| ids.iter().map(|id| open_tracepoint(id)).collect())
            .collect::<Option<Vec<Vec<OwnedFd>>>>();
        (Counters(fds), snapshot(None))
    }

    /// What was counted since [`Counters::start`] returned `start`.
    pub fn finish(self, start: Totals) -> Totals {
        let syscalls = self.0.as_ref().and_then(|events| {
            let mut out = [0; 5];
            for (o, fds) in out.iter_mut().zip(events) {
                for fd in fds {
                    *o += read_counter(fd)?;
                }
            }
            Some(out)
        });
        snapshot(syscalls).since(start)
    }
}

fn snapshot(syscalls: Option<[u64; 5]>) -> Totals {
    Totals {
        allocs: ALLOCS.load(Relaxed),
        syscalls,
        sleeps: sleeps(),
        ops: OPS.load(Relaxed),
    }
}

/// This process's voluntary context switches, its ended threads included.
fn sleeps() -> u64 {
    // SAFETY: `getrusage` fills the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a `rusage`.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0;
    }
    usage.ru_nvcsw as u64
}

/// `struct perf_event_attr` up to `PERF_ATTR_SIZE_VER0` (64 bytes).
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    ty: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    /// Bit 1: `inherit`.
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
}

const PERF_TYPE_TRACEPOINT: u32 = 2;
const INHERIT: u64 = 1 << 1;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;

fn open_tracepoint(name: &str) -> Option<OwnedFd> {
    let id = [
        "/sys/kernel/tracing/events",
        "/sys/kernel/debug/tracing/events",
    ]
    .iter()
    .find_map(|root| std::fs::read_to_string(format!("{root}/{name}/id")).ok())?;
    let attr = PerfEventAttr {
        ty: PERF_TYPE_TRACEPOINT,
        size: std::mem::size_of::<PerfEventAttr>() as u32,
        config: id.trim().parse().ok()?,
        flags: INHERIT,
        ..PerfEventAttr::default()
    };
    // SAFETY: perf_event_open(attr, pid 0 = this thread, cpu -1 = any, no group, cloexec);
    // `attr` outlives the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const PerfEventAttr,
            0,
            -1,
            -1,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    // SAFETY: a new fd, owned by nothing else.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn read_counter(fd: &OwnedFd) -> Option<u64> {
    let mut buf = [0u8; 8];
    (rustix::io::read(fd, &mut buf).ok()? == 8).then(|| u64::from_ne_bytes(buf))
}

/// The environment variable that tells a server where to report.
pub const REPORT_ENV: &str = "FDRPC_BENCH_COUNTS";

/// In a server: counts from now until the returned guard is dropped, then reports.
pub fn report_at_exit() -> impl Drop {
    struct Report(Option<(Counters, Totals)>);
    impl Drop for Report {
        fn drop(&mut self) {
            if let (Some((c, start)), Ok(path)) = (self.0.take(), std::env::var(REPORT_ENV)) {
                let _ = std::fs::write(path, c.finish(start).line());
            }
        }
    }
    Report(Some(Counters::start()))
}

/// A server's report, if it made one.
pub fn read_report(path: &std::path::Path) -> Option<Totals> {
    Totals::parse(&std::fs::read_to_string(path).ok()?)
}

/// One side's figures per operation.
#[derive(Debug, Clone, Copy, Default)]
pub struct PerOp {
    pub allocs: f64,
    pub sleeps: f64,
    /// As [`EVENTS`].
    pub syscalls: Option<[f64; 5]>,
}

impl PerOp {
    pub fn of(t: &Totals, ops: u64) -> Option<PerOp> {
        if ops == 0 {
            return None;
        }
        let per = |v: u64| v as f64 / ops as f64;
        Some(PerOp {
            allocs: per(t.allocs),
            sleeps: per(t.sleeps),
            syscalls: t.syscalls.map(|s| s.map(per)),
        })
    }
}

/// The names of the syscall figures, in order.
pub fn syscall_names() -> [&'static str; 5] {
    EVENTS.map(|(n, _)| n)
}
