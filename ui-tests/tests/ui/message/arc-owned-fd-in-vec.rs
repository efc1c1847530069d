use std::os::fd::OwnedFd;
use std::sync::Arc;

#[derive(fdrpc::Message)]
struct Opened {
    files: Vec<Arc<OwnedFd>>,
}

fn main() {}
