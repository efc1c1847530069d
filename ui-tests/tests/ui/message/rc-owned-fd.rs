use std::os::fd::OwnedFd;
use std::rc::Rc;

#[derive(fdrpc::Message)]
struct Opened {
    file: Rc<OwnedFd>,
}

fn main() {}
