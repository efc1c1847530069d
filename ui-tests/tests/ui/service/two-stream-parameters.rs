use std::os::fd::OwnedFd;

#[fdrpc::service]
trait Broker {
    async fn merge(&self, a: fdrpc::Stream<OwnedFd>, b: fdrpc::Stream<OwnedFd>) -> i64;
}

fn main() {}
