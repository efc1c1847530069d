#[fdrpc::service]
trait Broker {
    #[fdrpc(id = 3)]
    async fn deposit(&self, key: String);
}

fn main() {}
