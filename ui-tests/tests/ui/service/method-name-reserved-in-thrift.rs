#[fdrpc::service]
trait Broker {
    async fn import(&self, path: String) -> i32;
}

fn main() {}
