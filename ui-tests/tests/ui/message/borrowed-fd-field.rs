use std::os::fd::BorrowedFd;

#[derive(fdrpc::Message)]
struct Opened<'a> {
    file: BorrowedFd<'a>,
}

fn main() {}
