#[fdrpc::service]
trait Broker {
    async fn open<P: Into<String>>(&self, path: P) -> i32;
}

fn main() {}
