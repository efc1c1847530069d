use std::os::fd::OwnedFd;

#[derive(fdrpc::Message)]
struct Batch {
    items: fdrpc::Stream<OwnedFd>,
}

fn main() {}
