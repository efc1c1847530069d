struct Config;

#[fdrpc::service]
trait Broker {
    async fn configure(&self, config: Config);
}

fn main() {}
