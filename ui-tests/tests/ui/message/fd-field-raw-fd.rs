use std::os::fd::RawFd;

#[derive(fdrpc::Message)]
struct Opened {
    path: String,
    log: RawFd,
}

fn main() {}
