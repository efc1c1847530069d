#[fdrpc::service]
trait Broker {
    fn open(&self, path: String) -> i32;
}

fn main() {}
