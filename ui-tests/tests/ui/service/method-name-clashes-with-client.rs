#[fdrpc::service]
trait Broker {
    async fn connect(&self, path: String) -> i32;
}

fn main() {}
