#[derive(fdrpc::Message)]
struct Opened {
    #[fdrpc(binary)]
    path: String,
}

fn main() {}
