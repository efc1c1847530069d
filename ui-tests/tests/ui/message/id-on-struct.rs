#[derive(fdrpc::Message)]
#[fdrpc(id = 3)]
struct Opened {
    path: String,
}

fn main() {}
