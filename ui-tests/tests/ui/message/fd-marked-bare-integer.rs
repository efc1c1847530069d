#[derive(fdrpc::Message)]
struct Opened {
    path: String,
    #[fdrpc(fd)]
    log: i32,
}

fn main() {}
