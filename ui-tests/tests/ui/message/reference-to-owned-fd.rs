use std::os::fd::OwnedFd;

#[derive(fdrpc::Message)]
struct Opened<'a> {
    file: &'a OwnedFd,
}

fn main() {}
