#[fdrpc::service]
trait Broker {
    async fn open(&self, path: String) -> i32;
    #[fdrpc(name = "open")]
    async fn open_again(&self, path: String) -> i32;
}

fn main() {}
