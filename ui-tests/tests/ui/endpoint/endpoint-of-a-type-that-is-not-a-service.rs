#[fdrpc::service]
trait Broker {
    async fn open_session(&self) -> fdrpc::ClientEnd<String>;
}

fn main() {}
