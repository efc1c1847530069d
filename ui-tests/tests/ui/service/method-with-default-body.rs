#[fdrpc::service]
trait Broker {
    async fn open(&self, path: String) -> i32 {
        0
    }
}

fn main() {}
