#[derive(fdrpc::Message)]
struct Opened {
    #[fdrpc(id = 0)]
    path: String,
}

fn main() {}
