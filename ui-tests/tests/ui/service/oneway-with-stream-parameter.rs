use std::os::fd::OwnedFd;

#[fdrpc::service]
trait Broker {
    #[oneway]
    async fn deposit_all(&self, fds: fdrpc::Stream<OwnedFd>);
}

fn main() {}
