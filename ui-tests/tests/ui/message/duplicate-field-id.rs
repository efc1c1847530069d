#[derive(fdrpc::Message)]
struct Opened {
    path: String,
    #[fdrpc(id = 1)]
    size: i64,
}

fn main() {}
