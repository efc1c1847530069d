struct Tick {
    at: u64,
}

#[fdrpc::service]
trait Clock {
    async fn ticks(&self) -> fdrpc::Stream<Tick>;
}

fn main() {}
