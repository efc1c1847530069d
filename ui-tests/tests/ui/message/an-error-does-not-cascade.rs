// One mistake in a message is one error: where the type is used (a field of another
// message, a list of it, a method's parameter and return) nothing more is reported.
use std::os::fd::OwnedFd;

#[derive(fdrpc::Message)]
struct Broken {
    #[fdrpc(id = 0)]
    fd: OwnedFd,
}

#[derive(fdrpc::Message)]
struct Holder {
    inner: Broken,
    many: Vec<Broken>,
}

#[fdrpc::service]
trait Uses {
    async fn take(&self, b: Broken) -> Broken;
}

fn main() {}
