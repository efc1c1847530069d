//! [`TraceContext`]: the trace a call belongs to, carried in the W3C `traceparent` info
//! header so that the logs of both sides of a call (and of the calls a handler makes in
//! turn) can be joined by trace id.

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

/// The trace a call belongs to: a W3C Trace Context (`traceparent`) trace id, and the id of
/// the span that made the call.
///
/// A client sends one with a call when its tracing is on (a subscriber wants the call's
/// span) or when the call is made while a traced call is handled: the trace id is inherited
/// from [`TraceContext::current`], or new. The server records the trace id in its span of the
/// call, hands it to the handler as [`Context::trace`](crate::Context::trace), and makes it
/// [`current`](TraceContext::current) while the handler runs, so the calls the handler makes
/// carry it on.
///
/// # Examples
///
/// ```
/// use fdrpc::TraceContext;
///
/// let cx = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
/// assert_eq!(cx.trace_id(), 0x4bf92f3577b34da6a3ce929d0e0e4736);
/// assert_eq!(cx.span_id(), 0x00f067aa0ba902b7);
/// assert_eq!(cx.to_string(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
///
/// assert_eq!(TraceContext::current(), None);
/// let child = cx.scope(|| TraceContext::current().unwrap().child());
/// assert_eq!(child.trace_id(), cx.trace_id());
/// assert_ne!(child.span_id(), cx.span_id());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceContext {
    /// The trace id, high half first (two halves rather than a `u128`, which would double
    /// the alignment, and the size, of everything that holds a context).
    trace_id: [u64; 2],
    span_id: u64,
    flags: u8,
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceContext({self})")
    }
}

/// `version-traceid-parentid-flags`, lower-case hex: 2 + 1 + 32 + 1 + 16 + 1 + 2.
pub(crate) const TRACEPARENT_LEN: usize = 55;

/// The `sampled` bit of the trace flags.
const SAMPLED: u8 = 1;

thread_local! {
    static CURRENT: Cell<Option<TraceContext>> = const { Cell::new(None) };
    static RANDOM: Cell<u64> = Cell::new(seed());
}

impl TraceContext {
    /// A new trace, with random ids, sampled.
    pub fn new_root() -> Self {
        let trace_id = loop {
            let id = [random(), random()];
            if id != [0, 0] {
                break id;
            }
        };
        TraceContext {
            trace_id,
            span_id: span_id(),
            flags: SAMPLED,
        }
    }

    /// A new span of the same trace, whose parent is this one.
    pub fn child(&self) -> Self {
        TraceContext {
            span_id: span_id(),
            ..*self
        }
    }

    /// The trace id (never 0).
    pub fn trace_id(&self) -> u128 {
        (u128::from(self.trace_id[0]) << 64) | u128::from(self.trace_id[1])
    }

    /// The id of the span (never 0).
    pub fn span_id(&self) -> u64 {
        self.span_id
    }

    /// A context from ids another tracing system chose (an OpenTelemetry span context, in a
    /// [`TraceBridge`]); `None` if either id is 0, which `traceparent` forbids.
    pub fn from_ids(trace_id: u128, span_id: u64, sampled: bool) -> Option<Self> {
        (trace_id != 0 && span_id != 0).then_some(TraceContext {
            trace_id: [(trace_id >> 64) as u64, trace_id as u64],
            span_id,
            flags: if sampled { SAMPLED } else { 0 },
        })
    }

    /// Whether the caller recorded its side of the trace (the `sampled` flag).
    pub fn sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }

    /// The context of the call being handled on this thread, if that call was traced (or
    /// [`TraceContext::scope`] set one).
    pub fn current() -> Option<TraceContext> {
        CURRENT.with(Cell::get)
    }

    /// Runs `f` with this context as [`TraceContext::current`].
    pub fn scope<R>(&self, f: impl FnOnce() -> R) -> R {
        let _restore = enter(*self);
        f()
    }

    /// Wraps `fut` so that this context is [`TraceContext::current`] whenever it runs: for
    /// tasks a handler spawns whose calls belong to its trace.
    pub fn attach<F: Future>(self, fut: F) -> Traced<F> {
        Traced { cx: self, fut }
    }

    /// Parses a `traceparent` value: version `00` (or a later version's first four fields,
    /// as the W3C recommendation says), lower-case hex, ids not zero. `None` if it is not
    /// one; a receiver then ignores it.
    pub fn parse(value: &str) -> Option<Self> {
        let v = value.as_bytes();
        let version = hex(v.get(0..2)?)? as u8;
        if version == 0xff
            || v.len() < TRACEPARENT_LEN
            || (version == 0 && v.len() != TRACEPARENT_LEN)
            || (version != 0 && v.len() > TRACEPARENT_LEN && v.get(TRACEPARENT_LEN) != Some(&b'-'))
        {
            return None;
        }
        if v.get(2) != Some(&b'-') || v.get(35) != Some(&b'-') || v.get(52) != Some(&b'-') {
            return None;
        }
        let trace_id = hex(v.get(3..35)?)?;
        let span_id = u64::try_from(hex(v.get(36..52)?)?).ok()?;
        let flags = u8::try_from(hex(v.get(53..55)?)?).ok()?;
        (trace_id != 0 && span_id != 0).then_some(TraceContext {
            trace_id: [(trace_id >> 64) as u64, trace_id as u64],
            span_id,
            flags,
        })
    }

    /// The `traceparent` value, in `buf`.
    pub(crate) fn format<'b>(&self, buf: &'b mut [u8; TRACEPARENT_LEN]) -> &'b str {
        use std::io::Write;
        let mut w = &mut buf[..];
        // Exactly TRACEPARENT_LEN bytes: the write cannot fall short.
        let _ = write!(
            w,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id(),
            self.span_id,
            self.flags
        );
        std::str::from_utf8(buf).unwrap_or_default()
    }
}

impl fmt::Display for TraceContext {
    /// The `traceparent` value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.format(&mut [0; TRACEPARENT_LEN]))
    }
}

/// A trace id as `traceparent` writes it (32 lower-case hex digits): how spans record it.
pub(crate) struct TraceId(pub(crate) u128);

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// Lower-case hex digits as a number; `None` for anything else (upper case included, as
/// `traceparent` requires).
fn hex(digits: &[u8]) -> Option<u128> {
    if digits.is_empty() || digits.len() > 32 {
        return None;
    }
    digits.iter().try_fold(0u128, |n, &d| {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => return None,
        };
        Some((n << 4) | u128::from(v))
    })
}

/// Makes `cx` current until the returned guard is dropped, which puts the previous one back.
pub(crate) fn enter(cx: TraceContext) -> Enter {
    Enter(CURRENT.with(|c| c.replace(Some(cx))))
}

/// See [`enter`].
pub(crate) struct Enter(Option<TraceContext>);

impl Drop for Enter {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.0));
    }
}

pin_project_lite::pin_project! {
    /// A future that runs with a [`TraceContext`] current; see [`TraceContext::attach`].
    #[derive(Debug)]
    #[must_use = "futures do nothing unless polled"]
    pub struct Traced<F> {
        cx: TraceContext,
        #[pin]
        fut: F,
    }
}

impl<F: Future> Future for Traced<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _restore = enter(*this.cx);
        this.fut.poll(cx)
    }
}

/// A random, non-zero span id.
fn span_id() -> u64 {
    loop {
        let id = random();
        if id != 0 {
            return id;
        }
    }
}

/// Random enough for trace ids (not for secrets): SplitMix64 over a per-thread seed taken
/// from the standard library's randomly keyed hasher.
fn random() -> u64 {
    RANDOM.with(|state| {
        let s = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        state.set(s);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
}

fn seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_usize(&h as *const _ as usize);
    h.finish()
}

/// Joins fdrpc's spans to a tracing system that gives spans ids of its own, such as
/// OpenTelemetry through `tracing-opentelemetry`: with a bridge installed
/// ([`set_trace_bridge`]), a call carries the ids its `client_call` span has in that system,
/// and the server's `call` span takes the caller's as its parent, so a collector sees the
/// calls of several processes as one tree. Without one, fdrpc chooses the ids itself: the
/// trace id still follows the call (see [`TraceContext`]), and spans record it as
/// `trace_id`.
///
/// The methods run only for spans a subscriber wants, on the thread that makes or
/// dispatches the call; they must be quick. `examples/otel` in the repository is the bridge
/// to OpenTelemetry (20 lines), and checks that both processes' spans form one tree.
pub trait TraceBridge: Send + Sync + 'static {
    /// The ids `span` (a `client_call` span about to be sent, or a server's `call` span after
    /// [`set_parent`](TraceBridge::set_parent)) has in the other system; `None` lets fdrpc
    /// choose (a child of the current trace, or a new one).
    fn context_of(&self, span: &tracing::Span) -> Option<TraceContext>;

    /// Makes `parent`, the context a caller sent, the parent of `span`, the server's span of
    /// that call. Runs before the span is first entered.
    fn set_parent(&self, span: &tracing::Span, parent: &TraceContext);
}

/// [`set_trace_bridge`] was called before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a trace bridge is installed already")]
pub struct BridgeAlreadySet;

static BRIDGE: OnceLock<Box<dyn TraceBridge>> = OnceLock::new();

/// Installs `bridge` for the whole process (as `tracing`'s global subscriber is), once.
///
/// # Errors
///
/// [`BridgeAlreadySet`] if one is installed: it stays.
pub fn set_trace_bridge(bridge: impl TraceBridge) -> Result<(), BridgeAlreadySet> {
    BRIDGE.set(Box::new(bridge)).map_err(|_| BridgeAlreadySet)
}

/// The trace of a call a client sends from inside `span` (if a subscriber wants it): the
/// bridge's ids of the span; else a child of the current trace; else a new trace if there
/// is a span to record it, else none (which costs nothing).
pub(crate) fn outgoing(span: Option<&tracing::Span>) -> Option<TraceContext> {
    if let (Some(span), Some(bridge)) = (span, BRIDGE.get()) {
        if let Some(cx) = bridge.context_of(span) {
            return Some(cx);
        }
    }
    match TraceContext::current() {
        Some(parent) => Some(parent.child()),
        None => span.map(|_| TraceContext::new_root()),
    }
}

/// The trace a server runs a call in, given what the caller sent: a call that came without
/// one starts one here (so the handler's own calls and both sides' spans share an id). With
/// a bridge and a span, the span's parent is set first, and its own ids are the trace.
pub(crate) fn incoming(span: Option<&tracing::Span>, sent: Option<TraceContext>) -> TraceContext {
    if let (Some(span), Some(bridge)) = (span, BRIDGE.get()) {
        if let Some(parent) = &sent {
            bridge.set_parent(span, parent);
        }
        if let Some(cx) = bridge.context_of(span) {
            return cx;
        }
    }
    match sent {
        Some(parent) => parent.child(),
        None => TraceContext::new_root(),
    }
}
