#[fdrpc::service]
#[fdrpc(rename = "Other")]
trait Broker {
    async fn deposit(&self, key: String);
}

fn main() {}
