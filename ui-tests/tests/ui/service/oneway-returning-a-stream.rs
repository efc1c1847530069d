use std::os::fd::OwnedFd;

#[fdrpc::service]
trait Broker {
    #[oneway]
    async fn tail(&self, path: String) -> fdrpc::Stream<OwnedFd>;
}

fn main() {}
