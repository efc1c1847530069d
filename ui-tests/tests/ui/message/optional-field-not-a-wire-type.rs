#[derive(fdrpc::Message)]
struct Opened {
    ratio: Option<f32>,
}

fn main() {}
