#[fdrpc::service]
trait Broker {
    async fn open(path: String) -> i32;
}

fn main() {}
