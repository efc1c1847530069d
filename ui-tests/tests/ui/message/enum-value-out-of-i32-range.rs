#[derive(fdrpc::Message)]
enum Level {
    Low = 1,
    High = 3_000_000_000,
}

fn main() {}
