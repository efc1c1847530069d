struct Config {
    verbose: bool,
}

#[derive(fdrpc::Message)]
struct Opened {
    path: String,
    config: Config,
}

fn main() {}
