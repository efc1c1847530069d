#[derive(fdrpc::Message)]
struct Opened {
    #[fdrpc(rename = "my field")]
    path: String,
}

fn main() {}
