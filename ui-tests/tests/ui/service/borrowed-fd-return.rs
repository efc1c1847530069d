use std::os::fd::OwnedFd;

#[fdrpc::service]
trait Broker {
    async fn withdraw(&self, key: String) -> &'static OwnedFd;
}

fn main() {}
