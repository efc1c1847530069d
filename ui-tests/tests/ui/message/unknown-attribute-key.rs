#[derive(fdrpc::Message)]
struct Opened {
    #[fdrpc(idx = 3)]
    path: String,
}

fn main() {}
