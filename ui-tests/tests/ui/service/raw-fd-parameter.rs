use std::os::fd::RawFd;

#[fdrpc::service]
trait Broker {
    async fn deposit(&self, key: String, fd: RawFd);
}

fn main() {}
