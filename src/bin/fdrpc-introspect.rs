//! Prints the Thrift IDL of the services an fdrpc server serves, as `busctl introspect` does
//! for D-Bus.
//!
//! ```text
//! fdrpc-introspect /run/broker.sock > broker.thrift
//! ```

use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path] = args.as_slice() else {
        eprintln!("usage: fdrpc-introspect SOCKET");
        return ExitCode::from(2);
    };
    let client = match fdrpc::BlockingClient::connect(path) {
        Ok(c) => c.with_timeout(Duration::from_secs(10)),
        Err(e) => {
            eprintln!("fdrpc-introspect: cannot connect to {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match client.introspect() {
        Ok(idl) => {
            println!("{idl}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fdrpc-introspect: {path}: {e}");
            ExitCode::FAILURE
        }
    }
}
