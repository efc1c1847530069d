//! `fdrpc call`: a method called by name with JSON arguments, through the server's own IDL;
//! the result printed as JSON, its fds described, saved or handed to a command.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use crate::decode::{Item, RawReply, Render, ReturnedFd, raw_reply};
use crate::encode::{Args, Build};
use crate::fds::{self, FdSource};
use crate::schema::{Function, Schema, Type};
use crate::{Exit, Failure};

/// What `fdrpc call` was asked.
#[derive(Debug, clap::Args)]
pub struct CallArgs {
    /// The server's socket: a path, `@name` for an abstract one, or `fd:N` for a connection
    /// this command inherited as fd N (an endpoint `--exec` passed, say).
    pub socket: PathBuf,
    /// The method: its name, or `Service:method` on a server of several services.
    pub method: String,
    /// The arguments: a JSON object of parameters by name (`{}` if left out).
    pub json: Option<String>,
    /// An fd for the call: the number of one this command inherited (`3` after the shell's
    /// `3<file`), or a path to open read-only. Repeatable; the JSON names them by position
    /// (0 for the first). `{"path": ...}` in the JSON opens a path too.
    #[arg(long = "push-fd", value_name = "FD|PATH")]
    pub push_fd: Vec<String>,
    /// Copies what a returned fd holds to PATH. FIELD is where the fd is in the printed
    /// result (`log`, `fds.1`), or `result` for a result that is an fd. Repeatable.
    #[arg(long = "save-fd", value_name = "FIELD=PATH")]
    pub save_fd: Vec<String>,
    /// Seconds to wait for the reply (0: as long as it takes; default 25).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<f64>,
    /// Then calls METHOD (with the JSON arguments, `{}` if left out) on the service endpoint
    /// the reply returned (its one `client_end:Service` fd), and prints that reply too; an
    /// endpoint hands out a service of its own (`open_session --then user`).
    #[arg(long, num_args = 1..=2, value_names = ["METHOD", "JSON"])]
    pub then: Vec<String>,
    /// Runs COMMAND with the returned fds (of the last call) passed as LISTEN_FDS (fd 3 on),
    /// named in LISTEN_FDNAMES by where they are in the result; exits with its status. An
    /// endpoint passed so is a connection the command can call on (`fdrpc call fd:3 ...`).
    #[arg(long, requires = "command")]
    pub exec: bool,
    /// The command for --exec, after `--`.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// Runs the call.
///
/// # Errors
///
/// A usage error (bad JSON, a method or parameter that does not exist, a value of the wrong
/// type) or a failed call.
pub async fn run(args: CallArgs) -> Result<Exit, Failure> {
    let mut fds = FdSource::default();
    for p in &args.push_fd {
        fds.push(p).map_err(Failure::Usage)?;
    }
    let json: Value = match &args.json {
        Some(text) => serde_json::from_str(text)
            .map_err(|e| Failure::Usage(format!("the arguments are not JSON: {e}")))?,
        None => Value::Object(serde_json::Map::new()),
    };
    let saves = args
        .save_fd
        .iter()
        .map(|s| match s.split_once('=') {
            Some((field, path)) if !path.is_empty() => Ok((field.to_owned(), PathBuf::from(path))),
            _ => Err(Failure::Usage(format!(
                "--save-fd {s}: expected FIELD=PATH"
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let client = connect(&args.socket).await?;
    let client = match args.timeout {
        Some(s) if s <= 0.0 => client.without_timeout(),
        Some(s) => client.with_timeout(
            Duration::try_from_secs_f64(s)
                .map_err(|e| Failure::Usage(format!("--timeout {s}: {e}")))?,
        ),
        None => client,
    };
    let fds = Arc::new(fds);
    let (exit, mut returned) = call_method(&client, &args.method, &json, &fds, &saves).await?;
    if exit != Exit::Success {
        return Ok(exit);
    }
    if let Some((method, rest)) = args.then.split_first() {
        let json: Value = match rest.first() {
            Some(text) => serde_json::from_str(text)
                .map_err(|e| Failure::Usage(format!("--then {method}: not JSON: {e}")))?,
            None => Value::Object(serde_json::Map::new()),
        };
        let endpoint = take_client_end(&mut returned, method)?;
        let client = fdrpc::Client::from_std(std::os::unix::net::UnixStream::from(endpoint))
            .map_err(|e| Failure::Rpc(format!("--then {method}: {e}")))?;
        let client = match args.timeout {
            Some(s) if s <= 0.0 => client.without_timeout(),
            Some(s) => client.with_timeout(Duration::from_secs_f64(s)),
            None => client,
        };
        let (exit, then_returned) = call_method(&client, method, &json, &fds, &[]).await?;
        if exit != Exit::Success {
            return Ok(exit);
        }
        returned = then_returned;
    }
    if args.exec {
        return exec(&args.command, returned);
    }
    Ok(Exit::Success)
}

/// Connects to `socket`: a path, `@name`, or `fd:N` (an inherited connection).
async fn connect(socket: &std::path::Path) -> Result<fdrpc::Client, Failure> {
    let shown = socket.display();
    if let Some(n) = socket.to_str().and_then(|s| s.strip_prefix("fd:")) {
        let n: std::os::fd::RawFd = n
            .parse()
            .map_err(|_| Failure::Usage(format!("{shown}: expected fd:N with N a number")))?;
        let fd = fds::inherited(n).map_err(|e| Failure::Usage(format!("{shown}: {e}")))?;
        let kind = rustix::net::sockopt::socket_type(&fd).ok();
        if kind != Some(rustix::net::SocketType::STREAM) {
            return Err(Failure::Usage(format!("{shown}: not a stream socket")));
        }
        return fdrpc::Client::from_std(std::os::unix::net::UnixStream::from(fd))
            .map_err(|e| Failure::Rpc(format!("{shown}: {e}")));
    }
    fdrpc::Client::connect(socket)
        .await
        .map_err(|e| Failure::Rpc(format!("cannot connect to {shown}: {e}")))
}

/// The one client end among the fds a reply returned, for `--then`.
fn take_client_end(
    returned: &mut Vec<ReturnedFd>,
    method: &str,
) -> Result<std::os::fd::OwnedFd, Failure> {
    let ends: Vec<usize> = (0..returned.len())
        .filter(|&i| {
            crate::schema::endpoint_service(&returned[i].kind)
                .is_some_and(|(side, _)| side == "client_end")
        })
        .collect();
    match ends.as_slice() {
        [i] => Ok(returned.remove(*i).fd),
        found => Err(Failure::Usage(format!(
            "--then {method}: the reply returned {} client endpoints; --then needs exactly one",
            found.len()
        ))),
    }
}

/// Calls `method` on `client` with `json` and prints the reply (and a stream's items);
/// returns how it ended and the fds it returned. `saves` are done on the reply's fds.
async fn call_method(
    client: &fdrpc::Client,
    method: &str,
    json: &Value,
    fds: &Arc<FdSource>,
    saves: &[(String, PathBuf)],
) -> Result<(Exit, Vec<ReturnedFd>), Failure> {
    let idl = client
        .introspect()
        .await
        .map_err(|e| Failure::Rpc(format!("introspection failed: {e}")))?;
    let schema = Arc::new(Schema::parse(&idl).map_err(Failure::Rpc)?);
    let f = schema.function(method).map_err(Failure::Usage)?.clone();
    let build = Build {
        schema: &schema,
        fds,
    };
    let call_args = Args(build.args(&f.params, json).map_err(Failure::Usage)?);
    // The name the server routes: `Service:method` when it serves several.
    let wire = fdrpc::MethodName::from(schema.display_name(&f));

    if f.oneway {
        client
            .oneway(wire.clone(), call_args)
            .map_err(|e| Failure::Rpc(e.to_string()))?;
        client.flush().await;
        return Ok((Exit::Success, Vec::new()));
    }
    let sink = f.sink.as_ref().map(|s| {
        let (items, bad) = stdin_items(schema.clone(), fds.clone(), s.item.clone());
        (fdrpc::__private::producer::<Item, Item>(items), bad)
    });
    let (sink, bad_line) = match sink {
        Some((p, bad)) => (Some(p), Some(bad)),
        None => (None, None),
    };
    let calling = async {
        if f.stream.is_some() {
            let (reply, items) = client
                .call_streaming::<Args, RawReply, Item, Item>(
                    wire.clone(),
                    call_args,
                    raw_reply,
                    sink,
                )
                .await?;
            Ok((reply, Some(items)))
        } else if let Some(sink) = sink {
            let reply = client
                .call_with_sink(wire.clone(), call_args, raw_reply, sink)
                .await?;
            Ok((reply, None))
        } else {
            let reply = client.call(wire.clone(), call_args, raw_reply).await?;
            Ok((reply, None))
        }
    };
    let called: Result<_, fdrpc::RpcError> = match bad_line {
        Some(bad) => tokio::select! {
            r = calling => r,
            // A sink line that does not fit: the call is dropped, which aborts the sink.
            Ok(why) = bad => return Err(Failure::Usage(why)),
        },
        None => calling.await,
    };
    let (reply, items) = called.map_err(|e| Failure::Rpc(e.to_string()))?;
    let (exit, returned) = print_reply(&schema, &f, reply)?;
    // Fds of a declared exception (a log memfd) can be saved too; nothing is streamed or run
    // after one.
    save(saves, &returned)?;
    if exit != Exit::Success {
        return Ok((exit, returned));
    }
    if let Some(mut items) = items {
        let stream = f.stream.as_ref().map(|s| (&s.item, s.error.as_ref()));
        let Some((item_type, error_type)) = stream else {
            return Ok((Exit::Success, returned));
        };
        // Ctrl-C, or a reader that goes away (`| head`), ends the stream: it is dropped, which
        // cancels it at the server. A write that waits for a slow reader is interrupted too.
        let interrupted = tokio::signal::ctrl_c();
        tokio::pin!(interrupted);
        let mut stdout = tokio::io::stdout();
        loop {
            let next = tokio::select! {
                next = items.next() => next,
                _ = &mut interrupted => return Ok((Exit::Success, returned)),
            };
            let line = match next {
                None => break,
                Some(Ok(Item::Received(raw, table))) => {
                    let mut render = Render::new(&schema, table);
                    render.value(item_type, raw, "").map_err(Failure::Rpc)?
                }
                Some(Err(fdrpc::CallError::Service(Item::Received(raw, table)))) => {
                    let Some(error_type) = error_type else {
                        return Err(Failure::Rpc(
                            "the stream sent an error it does not declare".into(),
                        ));
                    };
                    let mut render = Render::new(&schema, table);
                    let value = render.value(error_type, raw, "").map_err(Failure::Rpc)?;
                    print_line(&serde_json::json!({ "error": value }));
                    return Ok((Exit::ServiceError, returned));
                }
                Some(Err(fdrpc::CallError::Rpc(e))) => return Err(Failure::Rpc(e.to_string())),
                Some(Ok(Item::ToSend(_)) | Err(fdrpc::CallError::Service(Item::ToSend(_)))) => {
                    continue;
                }
            };
            let text = format!("{line}\n");
            let written = tokio::select! {
                w = async {
                    stdout.write_all(text.as_bytes()).await?;
                    stdout.flush().await
                } => w,
                _ = &mut interrupted => return Ok((Exit::Success, returned)),
            };
            match written {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                    return Ok((Exit::Success, returned));
                }
                Err(e) => return Err(Failure::Usage(format!("writing stdout: {e}"))),
            }
        }
    }
    Ok((Exit::Success, returned))
}

/// Copies the content of the returned fds `saves` names to their paths.
fn save(saves: &[(String, PathBuf)], returned: &[ReturnedFd]) -> Result<(), Failure> {
    for (field, path) in saves {
        let wanted = if field == "result" || field == "." {
            ""
        } else {
            field.as_str()
        };
        let Some(found) = returned.iter().find(|r| r.path == wanted) else {
            let there: Vec<&str> = returned
                .iter()
                .map(|r| {
                    if r.path.is_empty() {
                        "result"
                    } else {
                        r.path.as_str()
                    }
                })
                .collect();
            return Err(Failure::Usage(format!(
                "--save-fd {field}: the reply has no fd there (it has: {})",
                if there.is_empty() {
                    "none".into()
                } else {
                    there.join(", ")
                }
            )));
        };
        fds::save(&found.fd, path)
            .map_err(|e| Failure::Usage(format!("--save-fd {field}={}: {e}", path.display())))?;
    }
    Ok(())
}

/// Prints a reply: its success value (`null` for none) or its declared exception; returns how
/// the call ended and the fds that came back.
fn print_reply(
    schema: &Schema,
    f: &Function,
    reply: RawReply,
) -> Result<(Exit, Vec<ReturnedFd>), Failure> {
    let mut render = Render::new(schema, reply.fds);
    let mut printed = None;
    for (id, raw) in reply.fields {
        match (id, &f.throws) {
            (0, _) if f.returns != Type::Void => {
                printed = Some((
                    render.value(&f.returns, raw, "").map_err(Failure::Rpc)?,
                    Exit::Success,
                ));
            }
            (1, Some(throws)) => {
                printed = Some((
                    render.value(throws, raw, "").map_err(Failure::Rpc)?,
                    Exit::ServiceError,
                ));
            }
            _ => {}
        }
    }
    let (value, exit) = printed.unwrap_or((Value::Null, Exit::Success));
    if exit == Exit::Success && f.stream.is_some() && f.returns == Type::Void {
        // A stream's opening reply carries nothing: only the items are printed.
    } else {
        print_line(&value);
    }
    let returned = std::mem::take(&mut render.fds);
    let unclaimed = render.unclaimed();
    if unclaimed > 0 {
        eprintln!("fdrpc: the reply carried {unclaimed} fds no field names; closed them");
    }
    Ok((exit, returned))
}

fn print_line(value: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

/// The items of a sink, one JSON value per line of stdin, checked against `item`; and a
/// channel that says why, if a line does not fit.
fn stdin_items(
    schema: Arc<Schema>,
    fds: Arc<FdSource>,
    item: Type,
) -> (
    fdrpc::Stream<Item, Item>,
    tokio::sync::oneshot::Receiver<String>,
) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let state = (lines, Some(tx), 0usize);
    let items = futures_util::stream::unfold(state, move |(mut lines, mut tx, n)| {
        let (schema, fds, item) = (schema.clone(), fds.clone(), item.clone());
        async move {
            loop {
                let line = match lines.next_line().await {
                    Ok(Some(line)) => line,
                    Ok(None) => return None,
                    Err(e) => {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(format!("reading the sink's items from stdin: {e}"));
                        }
                        return std::future::pending().await;
                    }
                };
                if line.trim().is_empty() {
                    continue;
                }
                let where_ = format!("line {}", n + 1);
                let built = serde_json::from_str::<Value>(&line)
                    .map_err(|e| format!("{where_} of stdin is not JSON: {e}"))
                    .and_then(|json| {
                        Build {
                            schema: &schema,
                            fds: &fds,
                        }
                        .value(&item, &json, &where_)
                    });
                match built {
                    Ok(out) => return Some((Ok(Item::ToSend(out)), (lines, tx, n + 1))),
                    Err(why) => {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(why);
                        }
                        // Nothing more is sent; the caller drops the call, aborting the sink.
                        return std::future::pending().await;
                    }
                }
            }
        }
    });
    (fdrpc::Stream::new(items), rx)
}

/// Runs `command` with the returned fds, the `sd_listen_fds` way; its exit status is ours.
fn exec(command: &[String], returned: Vec<ReturnedFd>) -> Result<Exit, Failure> {
    let Some((program, rest)) = command.split_first() else {
        return Err(Failure::Usage("--exec needs a command after `--`".into()));
    };
    let named: Vec<(String, std::os::fd::OwnedFd)> = returned
        .into_iter()
        .map(|r| {
            let name = if r.path.is_empty() {
                "result".to_owned()
            } else {
                r.path
            };
            (name, r.fd)
        })
        .collect();
    let mut cmd = std::process::Command::new(program);
    cmd.args(rest);
    // The command's own calls continue the trace of the call whose fds it got.
    if let Some(trace) = fdrpc::TraceContext::current() {
        cmd.env("TRACEPARENT", trace.to_string());
    }
    let mut child = fdrpc::systemd::spawn_with_fds(&mut cmd, named)
        .map_err(|e| Failure::Usage(format!("--exec {program}: {e}")))?;
    let status = child
        .wait()
        .map_err(|e| Failure::Usage(format!("--exec {program}: {e}")))?;
    let code = status.code().unwrap_or_else(|| {
        128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)
    });
    Ok(Exit::Command(u8::try_from(code).unwrap_or(255)))
}
