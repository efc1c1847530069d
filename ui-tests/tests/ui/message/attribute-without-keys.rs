#[derive(fdrpc::Message)]
struct Opened {
    #[fdrpc]
    path: String,
}

fn main() {}
