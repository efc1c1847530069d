#[derive(fdrpc::Message)]
struct Opened {
    #[fdrpc(id = 3, id = 4)]
    path: String,
}

fn main() {}
