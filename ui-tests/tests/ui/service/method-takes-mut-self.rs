#[fdrpc::service]
trait Broker {
    async fn open(&mut self, path: String) -> i32;
}

fn main() {}
