#[fdrpc::service]
trait Broker {
    #[fdrpc(onway)]
    async fn deposit(&self, key: String);
}

fn main() {}
