#[fdrpc::service]
trait Broker {
    async fn whoami(&self, cx: fdrpc::Context) -> i32;
}

fn main() {}
