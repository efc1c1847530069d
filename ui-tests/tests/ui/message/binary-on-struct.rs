#[derive(fdrpc::Message)]
#[fdrpc(binary)]
struct Opened {
    data: Vec<u8>,
}

fn main() {}
