#[derive(fdrpc::Message)]
struct Opened(String, i32);

fn main() {}
