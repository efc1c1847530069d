#[fdrpc::service]
trait Broker {
    async fn open(&self, path: String) -> Result<i32, String>;
}

fn main() {}
