//! The IO around a connection core: the socket, reading, writing and waking.
//!
//! Organization:
//! - `tokio_conn`: [`TokioConn`](tokio_conn::TokioConn), for the async client and the
//!   server: a writer task that sends everything queued in one `sendmsg`, and the client's
//!   reader (with the connection's one timer).
//! - `server_reader`: the server's reader on tokio: calls read within the server's limits
//!   and handed to its dispatch.
//! - `socket`: the socket registered with tokio for reading only (writability is registered
//!   on a dup only while a write would block).
//! - `alarm`: the client reader's one timer for call deadlines (a timerfd).
//! - `blocking_conn`: [`BlockingConn`](blocking_conn::BlockingConn), for the blocking
//!   client: plain threads that take turns reading for each other.
//! - `polled_conn`, `polled_server`: [`PolledConn`](polled_conn::PolledConn), for the
//!   blocking server: one thread per connection is its whole runtime (its tasks, its timers,
//!   one `poll(2)`), and the loop that reads its calls; `polled_limits`, what that loop
//!   takes before it reads (a call's slot, a read's share of the fd budget).
//! - `handle`: [`Driven`](handle::Driven), a connection as dispatch, producers and
//!   consumers hold it, whichever driver runs it.
//! - `call_sink`: what a server's reader hands calls to, and what a call holds.
//! - `call_slots`, `fd_budget`: what a tokio server's reader takes before it reads (a call's
//!   slot on its connection, a read's share of the fds held over all connections): counters
//!   with a wake-up; `budget_share`, a share of either server's fd budget.
//! - `outq`: `SIOCOUTQ`, how much the peer has not read.

#[cfg(feature = "tokio")]
pub(crate) mod alarm;
pub(crate) mod blocking_conn;
pub(crate) mod budget_share;
pub(crate) mod call_sink;
#[cfg(feature = "tokio")]
pub(crate) mod call_slots;
#[cfg(feature = "tokio")]
pub(crate) mod fd_budget;
pub(crate) mod handle;
pub(crate) mod outq;
pub(crate) mod polled_conn;
pub(crate) mod polled_limits;
pub(crate) mod polled_server;
#[cfg(feature = "tokio")]
pub(crate) mod server_reader;
#[cfg(feature = "tokio")]
pub(crate) mod socket;
#[cfg(feature = "tokio")]
pub(crate) mod tokio_conn;
