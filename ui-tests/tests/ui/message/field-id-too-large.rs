#[derive(fdrpc::Message)]
struct Opened {
    #[fdrpc(id = 40000)]
    path: String,
}

fn main() {}
