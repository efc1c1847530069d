#[fdrpc::service]
trait Broker {
    async fn open(&self, (a, b): (String, String)) -> i32;
}

fn main() {}
