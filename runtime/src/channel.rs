//! [`Channel`]: send and receive single messages with their fds over a blocking
//! `UnixStream`, without a service.

use std::borrow::Borrow;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

use crate::codec::error::{DecodeError, DecodeErrorKind};
use crate::codec::fd_table::FdTable;
use crate::codec::message::Message;
use crate::codec::{Decoder, Encoder, MessageType};
use crate::settings::Settings;
use crate::transport::error::TransportError;
use crate::transport::{Fill, RecvQueue, SendQueue};

/// One end of a message channel over a connected `SOCK_STREAM` Unix socket.
///
/// Each message travels as one THeader frame whose payload is a Thrift compact `ONEWAY`
/// message named after the type, exactly as the services use (see `docs/PROTOCOL.md`); fds
/// travel with `SCM_RIGHTS`, more than 253 split over several `sendmsg` calls. Received fds
/// are owned and close-on-exec from the moment `recvmsg` returns, and are closed on every
/// error path.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Seek, Write};
/// use std::os::unix::net::UnixStream;
///
/// #[derive(fdrpc::Message)]
/// struct Note {
///     text: String,
///     file: std::fs::File,
/// }
///
/// let (a, b) = UnixStream::pair()?;
/// let (mut tx, mut rx) = (fdrpc::Channel::new(a)?, fdrpc::Channel::new(b)?);
///
/// let mut file = tempfile()?;
/// file.write_all(b"hello through an fd")?;
/// tx.send(Note { text: "see file".into(), file })?;
///
/// let mut note: Note = rx.recv()?;
/// note.file.rewind()?;
/// let mut s = String::new();
/// note.file.read_to_string(&mut s)?;
/// assert_eq!((note.text.as_str(), s.as_str()), ("see file", "hello through an fd"));
/// # fn tempfile() -> std::io::Result<std::fs::File> {
/// #     let dir = std::env::temp_dir().join(format!("fdrpc-doc-{}", std::process::id()));
/// #     std::fs::create_dir_all(&dir)?;
/// #     let path = dir.join("note");
/// #     let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)?;
/// #     std::fs::remove_dir_all(&dir)?;
/// #     Ok(file)
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Channel {
    stream: UnixStream,
    send: SendQueue,
    recv: RecvQueue,
    seqid: i32,
    scratch: Vec<u8>,
}

impl Channel {
    /// A channel over `stream` with the default [`Settings`].
    ///
    /// # Errors
    ///
    /// Never at present; reserved for socket setup.
    pub fn new(stream: UnixStream) -> io::Result<Self> {
        Self::with_settings(stream, Settings::default())
    }

    /// A channel over `stream` applying the receive limits of `settings` (frame size, fds per
    /// frame, fds queued).
    ///
    /// # Errors
    ///
    /// Never at present; reserved for socket setup.
    pub fn with_settings(stream: UnixStream, settings: impl Borrow<Settings>) -> io::Result<Self> {
        let settings = settings.borrow();
        Ok(Channel {
            stream,
            send: SendQueue::new(),
            recv: RecvQueue::new(settings),
            seqid: 0,
            scratch: Vec::new(),
        })
    }

    /// The socket underneath.
    pub fn get_ref(&self) -> &UnixStream {
        &self.stream
    }

    /// Sends `msg`; its fds move to the peer and are closed here once sent.
    ///
    /// # Errors
    ///
    /// [`TransportError::Encode`] (nothing was sent) or [`TransportError::Io`].
    pub fn send<M: Message>(&mut self, msg: M) -> Result<(), TransportError> {
        self.seqid = self.seqid.wrapping_add(1);
        let mut enc = Encoder::with_buffer(std::mem::take(&mut self.scratch));
        let result = enc
            .write_message_header(M::NAME, MessageType::Oneway, self.seqid)
            .and_then(|()| msg.encode(&mut enc));
        let mut message = enc.into_encoded();
        let pushed = result
            .map_err(TransportError::from)
            .and_then(|()| Ok(self.send.push_encoded(self.seqid, &mut message, &[])?));
        message.inline.clear();
        self.scratch = message.inline;
        pushed?;
        self.send.flush_blocking(self.stream.as_fd())?;
        Ok(())
    }

    /// Receives the next message, waiting for it.
    ///
    /// # Errors
    ///
    /// [`TransportError::Closed`] at a clean end of stream; a decode error if the message is
    /// not an `M` (its fds are closed); a frame or fd-stream error if the peer broke the
    /// protocol, after which the channel should be dropped.
    pub fn recv<M: Message>(&mut self) -> Result<M, TransportError> {
        loop {
            if let Some(rf) = self.recv.next_frame()? {
                let mut dec = Decoder::new(rf.frame.payload, FdTable::of(rf.fds));
                let header = dec.read_message_header()?;
                if header.name != M::NAME || header.ty != MessageType::Oneway {
                    return Err(DecodeError::new(DecodeErrorKind::BadMessageHeader(format!(
                        "expected a oneway `{}`, got a {:?} `{}`",
                        M::NAME,
                        header.ty,
                        header.name
                    )))
                    .into());
                }
                let msg = M::decode(&mut dec).map_err(|e| e.in_field(M::NAME))?;
                dec.finish()?;
                return Ok(msg);
            }
            if self.recv.is_eof() {
                self.recv.check_clean_eof()?;
                return Err(TransportError::Closed);
            }
            if let Fill::Eof = self.recv.fill_blocking(self.stream.as_fd())? {
                self.recv.check_clean_eof()?;
                return Err(TransportError::Closed);
            }
        }
    }
}
