#[derive(fdrpc::Message)]
struct Opened {
    #[fdrpc(id = -4)]
    path: String,
}

fn main() {}
