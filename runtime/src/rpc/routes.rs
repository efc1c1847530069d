//! A connection's open streams, by sequence id, as its reader sees them: where data frames
//! go (with the window they must respect), and which producer credit frames feed.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;

use super::error::{ConnectionError, RpcError};
use super::flow::{Credit, Inbound, InboundTx, MAX_WINDOW, StreamFrame, Window};
use super::writer::Writer;
use crate::compact::{Encoder, MessageType};

/// The consumer end of one stream, as registered with the reader.
struct InRoute {
    tx: InboundTx,
    window: Arc<Mutex<Window>>,
}

#[derive(Default)]
struct Route {
    inbound: Option<InRoute>,
    credit: Option<Arc<Credit>>,
}

/// What to do with a stream frame; see [`Routes::deliver`].
pub(crate) enum Delivered {
    /// Handled (or dropped: no such stream).
    Done,
    /// The producer exceeded its credit: cancel the stream.
    Violation { seqid: i32 },
}

/// The streams of one connection.
#[derive(Default)]
pub(crate) struct Routes {
    map: Mutex<HashMap<i32, Route>>,
}

impl Routes {
    fn lock(&self) -> MutexGuard<'_, HashMap<i32, Route>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a consumer for `seqid`'s data frames with `window` items of credit.
    pub(crate) fn open_inbound(
        &self,
        seqid: i32,
        window: u32,
    ) -> (mpsc::UnboundedReceiver<Inbound>, Arc<Mutex<Window>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let window = Arc::new(Mutex::new(Window::new(window)));
        self.lock().entry(seqid).or_default().inbound = Some(InRoute {
            tx,
            window: window.clone(),
        });
        (rx, window)
    }

    /// Registers a producer for `seqid` that credit frames feed.
    pub(crate) fn open_credit(&self, seqid: i32, initial: u32) -> Arc<Credit> {
        let credit = Credit::new(initial);
        self.lock().entry(seqid).or_default().credit = Some(credit.clone());
        credit
    }

    /// Forgets the consumer of `seqid`, if it is still the one whose window is `window` (a
    /// peer may reuse a seqid once a stream is over).
    pub(crate) fn close_inbound(&self, seqid: i32, window: &Arc<Mutex<Window>>) {
        let mut map = self.lock();
        if let Some(r) = map.get_mut(&seqid) {
            if !r
                .inbound
                .as_ref()
                .is_some_and(|i| Arc::ptr_eq(&i.window, window))
            {
                return;
            }
            r.inbound = None;
            if r.credit.is_none() {
                map.remove(&seqid);
            }
        }
    }

    /// Cancels and forgets the producer `credit` of `seqid`, if it is still registered.
    pub(crate) fn close_credit(&self, seqid: i32, credit: &Arc<Credit>) {
        credit.cancel();
        let mut map = self.lock();
        if let Some(r) = map.get_mut(&seqid) {
            if !r.credit.as_ref().is_some_and(|c| Arc::ptr_eq(c, credit)) {
                return;
            }
            r.credit = None;
            if r.inbound.is_none() {
                map.remove(&seqid);
            }
        }
    }

    /// Routes one stream frame. `body` is the payload after the Thrift message header.
    pub(crate) fn deliver(
        &self,
        seqid: i32,
        kind: StreamFrame,
        credit: Option<u32>,
        body: &[u8],
        fds: Vec<OwnedFd>,
    ) -> Delivered {
        let mut map = self.lock();
        let Some(route) = map.get_mut(&seqid) else {
            // A stream that ended or was cancelled: the frame's fds close here.
            return Delivered::Done;
        };
        match kind {
            StreamFrame::Credit => {
                if let Some(c) = &route.credit {
                    c.grant(credit.unwrap_or(0).min(MAX_WINDOW));
                }
            }
            StreamFrame::Cancel => {
                if let Some(c) = route.credit.take() {
                    c.cancel();
                }
            }
            StreamFrame::Item | StreamFrame::Error => {
                let Some(inb) = &route.inbound else {
                    return Delivered::Done;
                };
                let ok = inb
                    .window
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .received();
                if !ok {
                    let _ = inb.tx.send(Inbound::Failed(RpcError::Application(
                        super::ApplicationError::new(
                            super::ApplicationErrorKind::ProtocolError,
                            "the producer sent more items than it was granted",
                        ),
                    )));
                    route.inbound = None;
                    return Delivered::Violation { seqid };
                }
                let _ = inb.tx.send(Inbound::Data {
                    body: body.to_vec(),
                    fds,
                });
                if kind == StreamFrame::Error {
                    route.inbound = None;
                }
            }
            StreamFrame::End => {
                if let Some(inb) = route.inbound.take() {
                    let _ = inb.tx.send(Inbound::End);
                }
            }
            StreamFrame::Abort => {
                if let Some(inb) = route.inbound.take() {
                    let _ = inb.tx.send(Inbound::Failed(RpcError::Application(
                        super::ApplicationError::new(
                            super::ApplicationErrorKind::Unknown,
                            "the producer aborted the stream",
                        ),
                    )));
                }
            }
        }
        if route.inbound.is_none() && route.credit.is_none() {
            map.remove(&seqid);
        }
        Delivered::Done
    }

    /// The connection ended: every consumer fails, every producer is cancelled.
    pub(crate) fn fail_all(&self, err: &ConnectionError) {
        let routes = std::mem::take(&mut *self.lock());
        for (_, r) in routes {
            if let Some(inb) = r.inbound {
                let _ = inb
                    .tx
                    .send(Inbound::Failed(RpcError::Connection(err.clone())));
            }
            if let Some(c) = r.credit {
                c.cancel();
            }
        }
    }
}

/// Sends a stream control or end frame (an empty struct) for `seqid`.
pub(crate) fn send_control(
    writer: &Writer,
    method: &str,
    ty: MessageType,
    seqid: i32,
    kind: StreamFrame,
    credit: Option<u32>,
) {
    let mut enc = Encoder::new();
    if enc.write_message_header(method, ty, seqid).is_err() {
        return;
    }
    enc.write_stop();
    let (payload, fds) = enc.into_parts();
    let n;
    let mut headers: Vec<(&str, &str)> = vec![(super::flow::HEADER_STREAM, kind.as_str())];
    if let Some(c) = credit {
        n = c.to_string();
        headers.push((super::flow::HEADER_CREDIT, &n));
    }
    let _ = writer.push(seqid, &payload, fds, &headers);
}
