//! `fdrpc`: introspect and call live fdrpc servers from the shell, file descriptors
//! included, with no generated code: the server's own IDL (`_fdrpc_idl`) says how to encode
//! the arguments and read the result.
//!
//! ```text
//! fdrpc introspect /run/broker.sock              # the Thrift IDL the server serves
//! fdrpc introspect --json /run/broker.sock       # services, methods, types, fd fields
//! fdrpc call /run/broker.sock whoami
//! fdrpc call --push-fd 3 /run/s.sock echo '{"bundle": {"label": "x", "fds": [0]}}' 3<file
//! fdrpc call /run/s.sock open '{"path": "/etc/hostname"}' --exec -- cat /dev/fd/3
//! fdrpc call /run/s.sock open_session '{"user": "kim"}' --then greet '{"greeting": "hi"}'
//! fdrpc call /run/s.sock open_session '{"user": "kim"}' --exec -- fdrpc call fd:3 greet
//! ```
//!
//! Exit status: 0 success, 1 the method's declared exception (printed as JSON), 2 a usage
//! error (bad JSON, an unknown method or parameter, a value of the wrong type), 3 the call
//! failed (connection, protocol, or a `TApplicationException` from the server); with
//! `--exec`, the command's status.

mod call;
mod decode;
mod encode;
mod fds;
mod field_path;
mod introspect;
mod schema;
mod type_expr;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Introspect and call fdrpc servers, file descriptors included.
#[derive(Debug, Parser)]
#[command(name = "fdrpc", version, about, long_about = None, after_help = EXIT_STATUS)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

const EXIT_STATUS: &str = "Exit status: 0 success; 1 the method's declared exception (printed \
as JSON); 2 usage error; 3 the call failed (connection, protocol, TApplicationException); with \
--exec, the command's status.

Tracing: the calls carry a W3C trace context (`traceparent`): that of the TRACEPARENT \
environment variable if it holds one, else a new trace. An --exec command gets TRACEPARENT \
set to it.";

#[derive(Debug, Subcommand)]
enum Command {
    /// Prints the Thrift IDL of the services a server serves.
    Introspect {
        /// The server's socket (a path, or `@name` for an abstract one).
        socket: PathBuf,
        /// Prints a JSON description instead: services, methods, types, and which fields
        /// hold fds.
        #[arg(long)]
        json: bool,
    },
    /// Calls a method with JSON arguments and prints the result as JSON (a stream: one line
    /// per item; a sink: one JSON item per line of stdin).
    Call(call::CallArgs),
}

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    Success,
    /// The method's declared exception.
    ServiceError,
    /// `--exec`'s command ended with this status.
    Command(u8),
}

/// Why the command failed.
#[derive(Debug)]
enum Failure {
    /// The command line or the JSON was wrong: exit status 2.
    Usage(String),
    /// The call failed: exit status 3.
    Rpc(String),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fdrpc: cannot start: {e}");
            return ExitCode::from(3);
        }
    };
    // Every call this command makes belongs to one trace: the one in `TRACEPARENT` (the
    // environment carrier OpenTelemetry specifies for processes), or a new one.
    let trace = std::env::var("TRACEPARENT")
        .ok()
        .and_then(|v| fdrpc::TraceContext::parse(&v))
        .map_or_else(fdrpc::TraceContext::new_root, |parent| parent.child());
    let result = runtime.block_on(trace.attach(async {
        match cli.command {
            Command::Introspect { socket, json } => introspect(socket, json).await,
            Command::Call(args) => call::run(args).await,
        }
    }));
    match result {
        Ok(Exit::Success) => ExitCode::SUCCESS,
        Ok(Exit::ServiceError) => ExitCode::from(1),
        Ok(Exit::Command(code)) => ExitCode::from(code),
        Err(Failure::Usage(why)) => {
            eprintln!("fdrpc: {why}");
            ExitCode::from(2)
        }
        Err(Failure::Rpc(why)) => {
            eprintln!("fdrpc: {why}");
            ExitCode::from(3)
        }
    }
}

async fn introspect(socket: PathBuf, json: bool) -> Result<Exit, Failure> {
    let client = fdrpc::Client::connect(&socket)
        .await
        .map_err(|e| Failure::Rpc(format!("cannot connect to {}: {e}", socket.display())))?;
    let idl = client
        .introspect()
        .await
        .map_err(|e| Failure::Rpc(format!("{}: {e}", socket.display())))?;
    if json {
        let schema = schema::Schema::parse(&idl).map_err(Failure::Rpc)?;
        let description = introspect::describe(&schema);
        println!(
            "{}",
            serde_json::to_string_pretty(&description).unwrap_or_default()
        );
    } else {
        println!("{idl}");
    }
    Ok(Exit::Success)
}
