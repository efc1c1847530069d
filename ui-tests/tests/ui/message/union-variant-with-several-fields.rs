use std::os::fd::OwnedFd;

#[derive(fdrpc::Message)]
enum Reply {
    Ok(OwnedFd),
    Both(String, OwnedFd),
}

fn main() {}
