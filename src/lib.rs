#![doc = include_str!("../README.md")]
//!
//! # Example: an fd through a socket
//!
//! ```
//! use std::io::{Read, Seek, Write};
//! use std::os::fd::OwnedFd;
//! use std::os::unix::net::UnixStream;
//!
//! #[derive(fdrpc::Message)]
//! struct Opened {
//!     path: String,
//!     file: std::fs::File,
//!     extra: Vec<OwnedFd>,
//! }
//!
//! let (a, b) = UnixStream::pair()?;
//! let (mut tx, mut rx) = (fdrpc::Channel::new(a)?, fdrpc::Channel::new(b)?);
//!
//! let mut file = tempfile()?;
//! file.write_all(b"read me through the fd")?;
//! tx.send(Opened { path: "/tmp/x".into(), file, extra: vec![] })?;
//!
//! let mut got: Opened = rx.recv()?;
//! got.file.rewind()?;
//! let mut text = String::new();
//! got.file.read_to_string(&mut text)?;
//! assert_eq!(text, "read me through the fd");
//! # fn tempfile() -> std::io::Result<std::fs::File> {
//! #     let dir = std::env::temp_dir().join(format!("fdrpc-doc-{}", std::process::id()));
//! #     std::fs::create_dir_all(&dir)?;
//! #     let f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(dir.join("f"))?;
//! #     std::fs::remove_dir_all(&dir)?;
//! #     Ok(f)
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

pub use fdrpc_macros::{Message, service};
pub use fdrpc_runtime::*;

#[doc(hidden)]
pub use fdrpc_runtime::__private;
