#[fdrpc::service(colour = "blue", rename = "9lives", crate = "not a path")]
trait Broker {
    async fn open(&self, path: String) -> i32;
}

fn main() {}
