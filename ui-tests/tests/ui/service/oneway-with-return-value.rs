use std::os::fd::OwnedFd;

#[fdrpc::service]
trait Broker {
    #[oneway]
    async fn deposit(&self, key: String, fd: OwnedFd) -> bool;
}

fn main() {}
