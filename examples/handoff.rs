//! Zero-downtime restart: the old instance of a server hands its listening TCP socket and a
//! sealed memfd of state to the new instance, which goes on accepting on the same port. No
//! connection attempt is refused in between, because the socket never closes.
//!
//! Run with `cargo run --example handoff`. (Both instances live in this one process here;
//! across processes the new instance would connect to the old one's Unix socket.)

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

/// What the old instance hands over.
#[derive(fdrpc::Message)]
pub struct Handover {
    /// The listening socket, still bound and listening.
    pub listener: TcpListener,
    /// The old instance's state, frozen: the new one can read it but nobody can change it.
    pub state: fdrpc::SealedMemfd,
    pub generation: u32,
}

#[fdrpc::service]
pub trait Supervisor {
    /// Gives up the listening socket and the state to the caller.
    async fn hand_over(&self) -> Handover;
}

struct OldInstance {
    listener: std::sync::Mutex<Option<TcpListener>>,
}

impl Supervisor for OldInstance {
    async fn hand_over(&self) -> Handover {
        let listener = self
            .listener
            .lock()
            .unwrap()
            .take()
            .expect("handed over once");
        let state =
            fdrpc::SealedMemfd::with_contents("state", b"connections served: 41").expect("memfd");
        Handover {
            listener,
            state,
            generation: 7,
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The old instance listens on a port of its own.
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let (old_end, new_end) = tokio::net::UnixStream::pair()?;
    let old = OldInstance {
        listener: std::sync::Mutex::new(Some(listener)),
    };
    let old_task = tokio::spawn(async move {
        fdrpc::Server::new()
            .serve_connection(old_end, SupervisorServer::new(old))
            .await
    });

    // The new instance takes over.
    let new = SupervisorClient::new(fdrpc::Client::new(new_end)?);
    let handover = new.hand_over().await?;
    drop(new);
    old_task.await??;
    let mut state = String::new();
    (&handover.state).read_to_string(&mut state)?;
    println!(
        "generation {} took over {addr} with state {state:?}",
        handover.generation + 1
    );

    // A client connects to the same address and is accepted by the new instance.
    let client = std::thread::spawn(move || -> std::io::Result<String> {
        let mut s = TcpStream::connect(addr)?;
        let mut reply = String::new();
        s.read_to_string(&mut reply)?;
        Ok(reply)
    });
    let (mut conn, _) = handover.listener.accept()?;
    conn.write_all(b"hello from the new instance")?;
    drop(conn);
    println!("client read: {}", client.join().expect("client thread")?);
    Ok(())
}
