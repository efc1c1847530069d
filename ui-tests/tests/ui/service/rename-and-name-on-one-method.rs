#[fdrpc::service]
trait Broker {
    #[fdrpc(rename = "open_file", name = "open")]
    async fn open(&self, path: String) -> i32;
}

fn main() {}
